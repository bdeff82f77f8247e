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
appended to it (the addon drops ``Content-Encoding``). A streamed HTML page
is parsed piece by piece, as a held page is whole (``extract.html_parts``):
what is hidden, reversed, in a noscript, a srcdoc or a text box is read as it
is on a held page, and the body's text of one piece runs on into the next
(an unfinished tag or reference waits for it). What the parser cannot know
across pieces (a script or a hidden element opened in one piece and closed
in the next) is read as text in the next: noise, which only ever raises a
score. Until 1 December a tag stripper read streamed pages, and a page padded
past the hold bound was read without any of that.
Server-sent events are read event by event: the text of each ``data:`` JSON
(``answer_text``), with the answer so far dropped when a service repeats it
in every event.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal

from proxy.content.charset import incremental_decoder
from proxy.content.decode import decoder
from proxy.content.extract import html_parts
from proxy.content.phrases import RIGHT_TO_LEFT_OVERRIDE, PhraseScorer, RunningScore, Scores

Kind = Literal["html", "text", "sse", "json"]
# A JSON answer is held whole to be read, up to this long (assistants' answers are kilobytes).
JSON_HOLD = 4 << 20
# How much of the text after a right-to-left override is read reversed with each piece.
BACKWARDS_WINDOW = 8 * 1024  # (each piece reads it again: an answer comes a few letters at a time)
# An unfinished tag at the end of a piece waits for the next, up to this long.
UNFINISHED_TAG = 64 * 1024
# And an unfinished server-sent event, up to this long.
UNFINISHED_EVENT = 1 << 20
# A character reference that may go on in the next piece (no ";" or space after it yet).
_OPEN_REFERENCE = re.compile(r"&[#0-9A-Za-z]{0,40}\Z")
# JSON keys whose strings are the words of an answer, in the shapes the assistants use:
# OpenAI choices[].delta.content, ChatGPT message.content.parts[], Anthropic delta.text,
# Gemini candidates[].content.parts[].text, and plain {"text"|"response"|"completion"}.
_TEXT_KEYS = frozenset(
    {"text", "content", "parts", "delta", "message", "choices", "candidates", "completion",
     "response", "answer", "output", "data"}
)  # fmt: skip


# What a streamed body may decode to in all: past it, it is cut as too large to check. A
# few kilobytes of gzip or brotli can decode to gigabytes, which would otherwise be decoded,
# scored and sent on; no page anyone reads is this long.
STREAM_DECODED_LIMIT = 64 << 20


# Bytes that only binary data holds (the MIME sniffing standard's "binary data bytes").
_BINARY = frozenset({*range(0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)})
# How much of a body the standard's sniffing looks at.
_SNIFFED = 1445


def looks_binary(head: bytes) -> bool:
    """Whether the start of a body without a type is binary data, which a browser saves
    rather than shows, as the MIME sniffing standard tells them apart."""
    return any(byte in _BINARY for byte in head[:_SNIFFED])


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
    return notice_of(kind, f"Schoolgate stopped this because its content looked like {words}.")


def notice_of(kind: Kind, message: str) -> bytes:
    """``message`` where the stream stops, in the body's own format."""
    if kind == "sse":
        event = {"choices": [{"delta": {"content": "\n\n" + message}}], "text": message}
        return f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode()
    if kind == "html":
        return f'<div role="alert"><p>{message}</p></div>'.encode()
    if kind == "json":  # in place of the answer, in the shapes the assistants' apps read
        answer = {"choices": [{"message": {"role": "assistant", "content": message}}]}
        return json.dumps({**answer, "text": message}).encode()
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
        on_too_large: Callable[[str], None],
        limit: int = STREAM_DECODED_LIMIT,
        sniff: bool = False,
    ) -> None:
        self.running = RunningScore(scorer)
        self._apart: Counter[int] = Counter()  # phrases in what a page's pieces show apart
        self._backwards = ""  # the text since a right-to-left override, its last window
        self._backwards_counts: Counter[int] = Counter()
        self.thresholds = thresholds
        self.kind = kind
        self.on_cross = on_cross
        self.on_too_large = on_too_large
        self.crossed: tuple[str, int] | None = None
        self.bytes = 0
        self.limit = limit
        self.decoded = 0
        self._decoder = decoder(encoding)
        self._text = incremental_decoder(charset)
        self._events = ""  # an unfinished server-sent event
        self._answer = ""  # the answer so far, for services that repeat it in every event
        self._in_tag = ""  # an unfinished tag at the end of an HTML chunk
        self._held: list[bytes] = []  # a JSON answer so far, sent on once it is read
        self._json: list[str] = []
        self._json_size = 0
        # A body sent without a type: its first bytes say whether it is text to read or
        # binary data to pass (a browser saves it), as a browser's sniffing would.
        self._sniff = sniff
        self.binary = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """What may go on of ``data`` (``b""`` at the end), piece by piece as it is decoded
        and scored: a notice in place of the rest once it crosses or decodes past the
        bound, then nothing."""
        if self.crossed is not None:
            return
        self.bytes += len(data)
        if data == b"":
            yield from self._take(b"", final=True)
            return
        pieces = self._decoder.pieces(data) if self._decoder is not None else iter((data,))
        for raw in pieces:
            if self._sniff and raw:
                self._sniff = False
                self.binary = looks_binary(raw)
            if self.binary:
                yield raw
                continue
            self.decoded += len(raw)
            if self.decoded > self.limit:
                yield self._too_large(f"it decodes to more than {self.limit >> 20} MiB")
                return
            yield from self._take(raw, final=False)
            if self.crossed is not None:
                return

    def _too_large(self, why: str) -> bytes:
        self.crossed = ("too large", 0)
        self.on_too_large(why)
        return notice_of(self.kind, "Schoolgate stopped this because it was too large to check.")

    def _take(self, raw: bytes, final: bool) -> Iterator[bytes]:
        if self.binary:
            return
        text = self._text.decode(raw, final=final)
        if self.kind == "json":
            # An answer in one JSON document cannot be read until it is whole: it is held (up
            # to JSON_HOLD), read, and then sent on whole or replaced by the notice.
            self._held.append(raw)
            self._json.append(text)
            self._json_size += len(text)
            if self._json_size > JSON_HOLD:
                yield self._too_large(f"an answer of more than {JSON_HOLD >> 20} MiB")
                return
            if not final:
                return
            reading = self._event_text("".join(self._json))
            raw = b"".join(self._held)
        else:
            reading = self._reading(text, final)
        self._read_backwards(reading)
        scores = self.running.feed(reading, final=final)
        if self._apart or self._backwards_counts:
            scores = self.running.scorer.scores_of(
                self.running.counts + self._apart + self._backwards_counts
            )
        over = scores.crossed(self.thresholds)
        if over:
            category, score = over[0]
            self.crossed = (category, score)
            yield notice(self.kind, self.on_cross(category, score, scores))
            return
        # A decoded body goes on decoded (the caller drops Content-Encoding), so that the
        # notice can follow it in the same format.
        if raw:
            yield raw

    def _read_backwards(self, reading: str) -> None:
        """A right-to-left override shows the text after it reversed ("\u202enrop" shows
        "porn"), and the text comes in pieces (an assistant's answer a few letters at a time):
        from the first override on, the last ``BACKWARDS_WINDOW`` characters are read
        reversed with each piece, each phrase counting as often as any window found it."""
        if not self._backwards and RIGHT_TO_LEFT_OVERRIDE not in reading:
            return
        start = 0 if self._backwards else reading.index(RIGHT_TO_LEFT_OVERRIDE)
        self._backwards = (self._backwards + reading[start:])[-BACKWARDS_WINDOW:]
        self._backwards_counts |= self.running.scorer.counts_in(self._backwards[::-1])

    @property
    def decodes(self) -> bool:
        """Whether the body goes on decoded: the response must lose its Content-Encoding."""
        return self._decoder is not None

    def _reading(self, text: str, final: bool) -> str:
        if self.kind == "html":
            joined = self._in_tag + text
            cut = len(joined)
            if not final:
                # An unfinished tag, or a reference that may go on ("&am" | "pporn"), waits
                # for the next piece.
                start = joined.rfind("<")
                # (An unfinished tag longer than any tag is text: it must not grow unread.)
                if start > joined.rfind(">") and len(joined) - start < UNFINISHED_TAG:
                    cut = start
                reference = _OPEN_REFERENCE.search(joined, 0, cut)
                if reference is not None:
                    cut = reference.start()
            joined, self._in_tag = joined[:cut], joined[cut:]
            # Each piece is parsed as held pages are (what is hidden, reversed, in a
            # noscript, a srcdoc, a text box...): its body's text runs on into the next
            # piece's, and the rest is counted apart.
            body, apart = html_parts(joined)
            if apart.strip():
                self._apart.update(self.running.scorer.counts_in(apart))
            return body
        if self.kind == "sse":
            return self._sse(text, final)
        return text

    def _sse(self, text: str, final: bool) -> str:
        self._events += text.replace("\r\n", "\n")
        *complete, self._events = self._events.split("\n\n")
        if len(self._events) > UNFINISHED_EVENT:
            # An event that never ends is read as it stands, not held without bound.
            complete, self._events = [*complete, self._events], ""
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
