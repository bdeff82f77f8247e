"""AI assistants: which hosts they answer on, and the prompt in what a pupil sends them.

The list is ``proxy/data/ai-assistants.txt`` (host and name; a host covers its
subdomains). ``prompt_of`` reads the words a person typed out of a request
body in the shapes the assistants' web apps and APIs use: OpenAI-style
``messages`` (the last one from the user, its ``content`` a string or a list
of parts), ChatGPT's web ``messages[].content.parts``, Gemini's ``contents``,
and plain ``prompt`` / ``query`` / ``q`` / ``input`` / ``text`` fields, in JSON or a
form. Whatever it cannot read it leaves alone: a prompt it misses is only
not logged, the answer is still scored.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from blocklists.index import host_suffixes

MAX_PROMPT_CHARS = 2000
_PROMPT_KEYS = ("prompt", "query", "q", "input", "text", "message", "inputs")


@cache
def assistants() -> dict[str, str]:
    """Host → assistant name, from the shipped list."""
    found: dict[str, str] = {}
    text = resources.files("proxy").joinpath("data/ai-assistants.txt").read_text("utf-8")
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2:
            found[words[0].lower()] = words[1]
    return found


def assistant_of(host: str) -> str | None:
    """The assistant answering on ``host`` (or a parent domain of it), or None."""
    known = assistants()
    return next((known[s] for s in host_suffixes(host.lower().rstrip(".")) if s in known), None)


def _text(value: Any) -> str:
    """The words in a message's content: a string, or a list of parts with text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(filter(None, (_text(part) for part in value)))
    if isinstance(value, dict):
        for key in ("text", "parts", "content"):
            if key in value:
                return _text(value[key])
    return ""


def _role(message: dict[str, Any]) -> str | None:
    role = message.get("role")
    author = message.get("author")
    if role is None and isinstance(author, dict):
        role = author.get("role")
    return str(role) if role is not None else None


def _from_json(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    for key in ("messages", "contents"):
        messages = data.get(key)
        if isinstance(messages, list):
            users = [m for m in messages if isinstance(m, dict) and _role(m) in {"user", None}]
            if users:
                last = users[-1]
                return _text(last.get("content", last.get("parts", "")))
    for key in _PROMPT_KEYS:
        if key in data:
            return _text(data[key])
    return ""


def prompt_of(body: bytes, content_type: str) -> str | None:
    """The prompt in a request body, tidied and cut to ``MAX_PROMPT_CHARS``, or None."""
    kind = content_type.split(";", 1)[0].strip().lower()
    text = ""
    try:
        if kind == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            text = next((form[k] for k in _PROMPT_KEYS if k in form), "")
        elif body[:1] in {b"{", b"["}:
            text = _from_json(json.loads(body))
    except (ValueError, RecursionError):
        return None
    prompt = " ".join(text.split())[:MAX_PROMPT_CHARS]
    return prompt or None
