"""Scoring a body as it streams: decode, reduce to text, score, and cut when it crosses.

A page too large to hold, or a chatbot's answer arriving as server-sent
events, is scored piece by piece (``RunningScore``) while it is forwarded.
``StreamScorer.feed`` takes each chunk of the body as it came from the
server and returns the chunks to send on; once a category reaches its
threshold it sends one last chunk of its own (a notice the reader sees, in
the body's own format) and nothing more, and calls ``on_cross``, which ends
the flow.

Bodies are decoded as they come (gzip, deflate, br, zstd) and then as text in
their charset; what goes on is the decoded body, so that the notice can be
appended to it (the addon drops ``Content-Encoding``). Markup in a streamed
HTML page is dropped with a cheap tag stripper (a full parse needs the whole
page), read two ways as a held page is (``proxy.content.extract``): each tag a
space, and each tag nothing (``p<b>o</b>rn`` shows "porn"), with character
references read as the parser reads them (``p&#111;rn``, ``&ampporn``); scripts
may then add a little noise, which only ever raises a score.
Server-sent events are read event by event: the text of each ``data:`` JSON
(``answer_text``), with the answer so far dropped when a service repeats it
in every event.
"""

from __future__ import annotations

import codecs
import html
import json
import re
import zlib
from collections.abc import Callable
from typing import Any, Literal, Protocol

import brotli  # type: ignore[import-untyped]
import zstandard

from proxy.content.phrases import PhraseScorer, RunningReadings, Scores

Kind = Literal["html", "text", "sse", "json"]
_TAG = re.compile(r"<[^>]*>|<[^>]*\Z")
# A character reference that may go on in the next piece (no ";" or space after it yet).
_OPEN_REFERENCE = re.compile(r"&[#0-9A-Za-z]{0,40}\Z")
# JSON keys whose strings are the words of an answer, in the shapes the assistants use:
# OpenAI choices[].delta.content, ChatGPT message.content.parts[], Anthropic delta.text,
# Gemini candidates[].content.parts[].text, and plain {"text"|"response"|"completion"}.
_TEXT_KEYS = frozenset(
    {"text", "content", "parts", "delta", "message", "choices", "candidates", "completion",
     "response", "answer", "output", "data"}
)  # fmt: skip


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


def _decoder(encoding: str | None) -> _Decoder | None:
    name = (encoding or "identity").strip().lower()
    if name in {"gzip", "x-gzip"}:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj()
    if name == "br":
        return brotli.Decompressor()  # type: ignore[no-any-return]
    if name == "zstd":
        return zstandard.ZstdDecompressor().decompressobj()
    if name == "identity":
        return None
    raise ValueError(f"content encoding {encoding!r} cannot be read")


def answer_text(value: Any) -> str:
    """The words in a chatbot event's JSON: the strings under the keys answers use."""
    found: list[str] = []

    def walk(node: Any, wanted: bool) -> None:
        if isinstance(node, str):
            if wanted:
                found.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item, wanted)
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(item, key in _TEXT_KEYS)

    walk(value, False)
    return " ".join(found)


def notice(kind: Kind, words: str) -> bytes:
    """What the reader sees where the stream stops, in the body's own format."""
    message = f"Schoolgate stopped this because its content looked like {words}."
    if kind == "sse":
        event = {"choices": [{"delta": {"content": "\n\n" + message}}], "text": message}
        return f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode()
    if kind == "html":
        return f'<div role="alert"><p>{message}</p></div>'.encode()
    return ("\n\n" + message + "\n").encode()


class StreamScorer:
    """Scores a streamed body; ``feed`` returns what may go on (``b""`` marks the end)."""

    def __init__(
        self,
        scorer: PhraseScorer,
        thresholds: dict[str, int],
        kind: Kind,
        encoding: str | None,
        charset: str,
        on_cross: Callable[[str, int, Scores], str],
    ) -> None:
        # An HTML page is read two ways (each tag a space, and nothing); the rest one way.
        self.running = RunningReadings(scorer, 2 if kind == "html" else 1)
        self.thresholds = thresholds
        self.kind = kind
        self.on_cross = on_cross
        self.crossed: tuple[str, int] | None = None
        self.bytes = 0
        self._decoder = _decoder(encoding)
        try:
            self._text = codecs.getincrementaldecoder(charset)("replace")
        except LookupError:
            self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self._events = ""  # an unfinished server-sent event
        self._answer = ""  # the answer so far, for services that repeat it in every event
        self._in_tag = ""  # an unfinished tag at the end of an HTML chunk

    def feed(self, data: bytes) -> list[bytes]:
        if self.crossed is not None:
            return []
        final = data == b""
        self.bytes += len(data)
        raw = self._decoder.decompress(data) if self._decoder is not None and data else data
        text = self._text.decode(raw, final=final)
        scores = self.running.feed(self._readings(text, final), final=final)
        over = scores.crossed(self.thresholds)
        if over:
            category, score = over[0]
            self.crossed = (category, score)
            words = self.on_cross(category, score, scores)
            return [notice(self.kind, words)]
        # A decoded body goes on decoded (the caller drops Content-Encoding), so that the
        # notice can follow it in the same format.
        return [raw] if raw else []

    @property
    def decodes(self) -> bool:
        """Whether the body goes on decoded: the response must lose its Content-Encoding."""
        return self._decoder is not None

    def _readings(self, text: str, final: bool) -> tuple[str, ...]:
        if self.kind == "html":
            joined = self._in_tag + text
            cut = len(joined)
            if not final:
                # An unfinished tag, or a reference that may go on ("&am" | "pporn"), waits
                # for the next piece.
                start = joined.rfind("<")
                if start > joined.rfind(">"):
                    cut = start
                reference = _OPEN_REFERENCE.search(joined, 0, cut)
                if reference is not None:
                    cut = reference.start()
            joined, self._in_tag = joined[:cut], joined[cut:]
            return html.unescape(_TAG.sub(" ", joined)), html.unescape(_TAG.sub("", joined))
        if self.kind == "sse":
            return (self._sse(text, final),)
        if self.kind == "json" and final:
            return (self._event_text(text),)
        return (text if self.kind == "text" else "",)

    def _sse(self, text: str, final: bool) -> str:
        self._events += text.replace("\r\n", "\n")
        *complete, self._events = self._events.split("\n\n")
        if final and self._events:
            complete, self._events = [*complete, self._events], ""
        words: list[str] = []
        for event in complete:
            data = "\n".join(
                line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")
            )
            if data and data != "[DONE]":
                words.append(self._event_text(data))
        return "".join(words)

    def _event_text(self, data: str) -> str:
        try:
            said = answer_text(json.loads(data))
        except ValueError:
            said = data  # a plain-text event
        # Some services send the answer so far in every event (keep only what is new); most
        # send the next few characters (tokens split words, so pieces join with no space).
        cumulative = len(said) > len(self._answer) > 0 and said.startswith(self._answer)
        new = said[len(self._answer) :] if cumulative else said
        self._answer = said
        return new
