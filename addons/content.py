"""ContentAnalysis: score the text of the pages a group reads, block what crosses, and learn.

For a group whose policy has ``content:``, an allowed HTML or plain-text
response (``analyse: [pages]``; a search engine's results page needs
``search_results``) is held up to ``schoolgate_content_hold_kb``, decoded
(gzip, deflate, br, zstd: ``proxy.content.decode``; in each charset a browser
may read it in: ``proxy.content.charset``), reduced to the
words a reader sees (``proxy.content.extract``) and scored against the phrase
lists (``proxy.content.phrases``). A category whose score reaches the group's
threshold replaces the page with the block page, which says in plain words
what the page looked like and never the phrases; the scores and the phrases
that counted go in ``flow.metadata[CONTENT]`` for the access log. With
``action: log`` nothing is blocked: the scores are only recorded.

A page that crosses becomes an entry of the learned list
(``proxy.content.learned``), shared by every worker through a file: the next
request for it is answered at ``requestheaders``, before any upstream
connection, without analysis (images the detector found, ``addons/images.py``,
are entries of the same list). A confirmed entry blocks in its category for
every group whose action for a policy category of that name blocks (as a
local block entry would; every group with content analysis when the policy
has no such category); a rejected one is never analysed again. Scores are
cached per URL and body, so a worker analyses a page once while it stays the same.

Failure policy: an error while scoring blocks the page, since "could not
read it" must not mean "allowed" for the groups that asked for analysis. A
page larger than the hold bound is scored as it streams and cut where it
crosses: known to be larger at its head, or, sent chunked, once it grows past
the bound (``addons/limits.py`` starts the scorer on what was held). One that
cannot be scored as it streams (an encoding no decoder reads) passes and says
so in the log (``content: {"outcome": "unscored: ..."}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.utils.asyncio_utils import create_task

from addons import facts
from addons.facts import DECISION, answered, answered_early, identity_of
from addons.pipeline import serve_at_headers, serve_block
from blocklists.normalise import BadURL, normalise_url
from proxy.content import charset
from proxy.content.assistants import assistant_of
from proxy.content.decode import TooLarge, Unreadable, decoded
from proxy.content.extract import PARSED_TYPES, html_marked, page_marked
from proxy.content.learned import (
    LEARNED_FILE,
    LearnedEntry,
    LearnedList,
    blocks,
    learned_now,
)
from proxy.content.phrases import CATEGORY_WORDS, Scores
from proxy.content.stream import Kind, StreamScorer, looks_binary, notice_of
from proxy.decision import Decision
from proxy.policy import ContentRule, Group
from proxy.watch import FileWatch

log = logging.getLogger("schoolgate.content")

# What was scored, for the access log: a ContentVerdict.
CONTENT = "schoolgate.content"
_HOLD = "schoolgate.content_hold"
# How addons/limits.py starts scoring a held page of unknown length that grows past the hold
# bound as it streams on (rather than passing it unscored).
_STREAM_PAST_HOLD = "schoolgate.content_stream_past_hold"
_STREAMED = "schoolgate.content_stream"
# Text types a browser does not show as a page.
_NOT_PAGES = frozenset(
    {"text/css", "text/javascript", "text/ecmascript", "text/event-stream", "text/vtt",
     "text/cache-manifest"}
)  # fmt: skip
# What a browser shows as a page of text: what the parser reads (HTML, and SVG and XML
# documents, drawn or shown as a tree of their text when opened), and plain text.
TEXT_TYPES = PARSED_TYPES | {"text/plain"}
# An assistant's answer, by content type: events, JSON, or text as it comes.
ANSWER_TYPES: dict[str, Kind] = {
    "text/event-stream": "sse",
    "application/json": "json",
    "application/x-ndjson": "text",
    "text/plain": "text",
}
CACHE_SIZE = 10_000
# A held page may decode to this many times the hold bound (32 MiB by default); past it, it is
# not read (proxy.content.decode) but refused. Text compresses 5-10 times.
DECODED_PER_HELD = 16
# How often each worker reads what others appended to the learned list.
LEARNED_POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ContentVerdict:
    """The scores of one page and what they led to (``blocked``, ``logged``, ``passed``...)."""

    outcome: str
    scores: dict[str, int]
    phrases: tuple[str, ...]
    category: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "scores": self.scores,
            "phrases": list(self.phrases),
            "category": self.category,
        }


def _entry_of(flow: http.HTTPFlow) -> str | None:
    try:
        return normalise_url(flow.request.pretty_url).entry
    except BadURL:
        return None


def page_type(declared: str) -> str | None:
    """How a response of this declared type is read, as a browser shows it: one of
    ``TEXT_TYPES``, or None for what a browser does not show as a page of text.

    No type at all: a browser sniffs the bytes and shows HTML as a page, so it is read as
    HTML (unless its first bytes are binary data, which a browser saves rather than shows:
    ``stream.looks_binary``). Another ``text/`` type (``text/markdown``): shown as text.
    Style sheets, scripts and event streams are not pages. Any other XML type (a feed,
    ``application/rss+xml``) is shown as its text; ``multipart/x-mixed-replace``, a page
    pushed part after part, is shown part by part by Firefox: read as HTML, all its parts.
    """
    if declared in TEXT_TYPES:
        return declared
    if not declared or declared == "multipart/x-mixed-replace":
        return "text/html"
    if declared.startswith("text/") and declared not in _NOT_PAGES:
        return "text/plain"
    if declared.endswith("+xml"):
        return "application/xml"
    return None


def _score_key(entry: str, response: http.Response) -> tuple[str, str, str, bytes]:
    """What a held page's score is kept by: its URL, everything that says how its bytes are
    read (the whole Content-Type, with its charset, and the Content-Encoding: the same bytes
    as gzip or as they are, or as UTF-8 or UTF-16, are different pages), and a SHA-256 of
    the bytes. A fast non-cryptographic hash will not do: a site can make a benign page and
    an adult one with the same xxh3 (its default secret is public), serve the benign one
    first and have the adult one passed on its score. SHA-256 costs about 0.08 ms a 100 KB
    page here (the CPU's SHA extensions), a tenth of the parse it saves."""
    headers = response.headers
    return (
        entry,
        headers.get("content-type", ""),
        headers.get("content-encoding", ""),
        hashlib.sha256(response.raw_content or b"").digest(),
    )


def held_page_texts(response: http.Response, mime: str, limit: int) -> list[str]:
    """The words of a held page, as ``proxy.content.extract`` reads a page's markup (with
    ``MARK`` where two pieces of its text meet): one reading for each charset a browser may
    read it in (``proxy.content.charset``; one for almost every page).

    Its content coding is undone here, to at most ``limit`` bytes (``proxy.content.decode``:
    mitmproxy's own decoding has no bound, and a small gzip can decode to gigabytes).
    A page read as UTF-8 goes to the parser as the bytes that came: decoding it to ``str``
    only for the parser to encode it back cost two copies of the page (Lexbor replaces bytes
    that are not UTF-8 with U+FFFD, as decoding with ``errors="replace"`` would). Raises
    ``TooManyCharsets``, a ``ValueError``, for a page that names more charsets than any does.
    """
    content = decoded(response.raw_content or b"", response.headers.get("content-encoding"), limit)
    if "content-type" not in response.headers and looks_binary(content):
        return []  # binary data with no type: a browser saves it rather than shows it
    encodings, skip = charset.candidates(content, response.headers.get("content-type", ""))
    content = content[skip:]
    return [
        html_marked(content)
        if encoding is charset.UTF8 and mime in PARSED_TYPES
        else page_marked(charset.decode(content, encoding), mime)
        for encoding in encodings
    ]


class ContentAnalysis:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.scored = 0
        self.blocked = 0
        self.learned: LearnedList | None = None
        # Scores by URL and body: a page is analysed once while it stays the same, and again
        # when the same URL serves something else (a page first benign, then not).
        self._scores: OrderedDict[tuple[str, str, str, bytes], Scores] = OrderedDict()
        self._watcher: asyncio.Task[None] | None = None
        self._files = FileWatch()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_content_hold_kb",
            int,
            2048,
            "Pages up to this size are held and scored before they are sent (content analysis).",
        )

    def running(self) -> None:
        self._learned_list().refresh()
        if self._watcher is None:
            self._watcher = create_task(self._watch(), name="content learned list", keep_ref=True)

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def _learned_list(self) -> LearnedList:
        path = self.loader.filterset.settings.data_dir / LEARNED_FILE
        if self.learned is None or self.learned.path != path:
            # stamp first, then read: an append in between is read now and seen again later
            self._files = FileWatch([path])
            self.learned = LearnedList(path)
            self.learned.refresh()
        return self.learned

    def _in_force(self) -> LearnedList:
        """The list as the watcher keeps it; opened here if a request comes before running().

        Not ``_learned_list()`` on every request: the watcher follows a moved data folder
        twice a second, and the request path need not build the path each time.
        """
        return self.learned if self.learned is not None else self._learned_list()

    async def _watch(self) -> None:
        """Pick up what other workers (and the technician) appended to the learned list."""
        while True:
            await asyncio.sleep(LEARNED_POLL_SECONDS)
            try:
                learned = self._learned_list()
                if self._files.changed():
                    learned.refresh()
            except Exception:  # the watcher must outlive one bad read
                log.exception("reading the learned list failed")

    # ---- which group, which rule ---------------------------------------------------------

    def _group(self, flow: http.HTTPFlow) -> Group | None:
        identity = identity_of(flow)
        return self.loader.filterset.policy.groups.get(identity.group) if identity else None

    def _rule(self, flow: http.HTTPFlow) -> ContentRule | None:
        group = self._group(flow)
        if group is None or group.content is None:
            return None
        kind = "search_results" if facts.search_of(flow) is not None else "pages"
        return group.content if kind in group.content.analyse else None

    def _learned_blocks(self, group: Group, found: LearnedEntry) -> bool:
        return blocks(found, group, self.loader.filterset.policy)

    # ---- hooks ---------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """A page the learned list knows is answered here, before any upstream connection."""
        if answered_early(flow):
            return
        # The list itself, not what running() left: a worker serves requests while the
        # running() hooks before this one (the store's migration) are still being awaited.
        learned = self._in_force()
        if not learned.entries:
            return  # nothing learned yet: no need to read the URL (about 20 µs a request)
        group = self._group(flow)
        entry = _entry_of(flow)
        found = learned.get(entry) if entry is not None else None
        if found is not None:
            flow.metadata[facts.LEARNED_STATE] = found.state
        if group is None or found is None or not self._learned_blocks(group, found):
            return
        flow.metadata[CONTENT] = ContentVerdict(
            f"blocked: {found.state} list entry", {found.category: found.score}, found.phrases,
            found.category,
        )  # fmt: skip
        self._block(flow, found.category, f"the learned list ({found.state}, score {found.score})")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow) or flow.response is None:
            return
        group = self._group(flow)
        if group is None or group.content is None:
            return
        declared = flow.response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        answers = "ai_answers" in group.content.analyse and declared in ANSWER_TYPES
        if answers and assistant_of(flow.request.pretty_host) is not None:
            self._stream(flow, group.content, ANSWER_TYPES[declared])
            return
        mime = page_type(declared)
        if self._rule(flow) is None or mime is None:
            return
        kind: Kind = "html" if mime != "text/plain" else "text"
        length = flow.response.headers.get("content-length", "").strip()
        too_large = length.isdigit() and int(length) > ctx.options.schoolgate_content_hold_kb * 1024
        if too_large or callable(flow.response.stream):
            # Too large to hold (or another part streams it already): scored as it passes.
            self._stream(flow, group.content, kind, sniff=not declared)
            return
        # Held up to the hold bound even when it is over the streaming threshold that made
        # mitmproxy mark it for streaming (addons/limits.py keeps holding it that far).
        flow.response.stream = False
        flow.metadata[_HOLD] = mime
        flow.metadata[_STREAM_PAST_HOLD] = functools.partial(
            self._stream, flow, group.content, kind, at_headers=False, sniff=not declared
        )

    def _stream(
        self,
        flow: http.HTTPFlow,
        rule: ContentRule,
        kind: Kind,
        at_headers: bool = True,
        sniff: bool = False,
    ) -> None:
        """Score the body as it is forwarded; cut it with a notice when it crosses."""
        scorer = self.loader.filterset.policy.content
        response = flow.response
        if scorer is None or response is None:
            return

        def crossed(category: str, score: int, scores: Scores) -> str:
            phrases = tuple(hit.phrase for hit in scores.phrases_for(category)[:10])
            flow.metadata[CONTENT] = ContentVerdict(
                "cut" if rule.action == "block" else "logged", scores.by_category, phrases,
                category,
            )  # fmt: skip
            words = CATEGORY_WORDS.get(category, category)
            flow.metadata[DECISION] = Decision.block(
                identity_of(flow),
                f"content analysis: {words}: the text scored {score} as it streamed (cut)",
                by="content",
                category=category,
            )
            self.blocked += 1
            with contextlib.suppress(exceptions.ControlException):
                flow.kill()  # nothing more goes on; the connection ends when the server's does
            return words

        def too_large(why: str) -> None:
            flow.metadata[CONTENT] = ContentVerdict(f"cut: {why}", {}, ())
            flow.metadata[DECISION] = Decision.block(
                identity_of(flow), f"content analysis: {why} (cut as it streamed)", by="content"
            )
            self.blocked += 1
            with contextlib.suppress(exceptions.ControlException):
                flow.kill()

        try:
            guard = StreamScorer(
                scorer,
                rule.threshold_for(),
                kind,
                response.headers.get("content-encoding"),
                charset.stream_charset(response.headers.get("content-type", "")),
                crossed,
                too_large,
                sniff=sniff,
            )
        except ValueError as exc:  # an encoding it cannot read: not passed as scored
            self._refuse_unreadable(flow, kind, str(exc), at_headers)
            return
        if rule.action == "log":
            guard.thresholds = {}  # scored for the log only: nothing is ever cut
        if guard.decodes:
            response.headers.pop("content-encoding", None)
        if guard.decodes or kind == "json":  # a JSON answer may go as the notice instead
            response.headers.pop("content-length", None)
        before = response.stream
        if callable(before):  # another addon checks the stream too (downloads): ours sees
            #                   what it lets through
            def chained(data: bytes) -> list[bytes]:
                passed = before(data)
                pieces = [passed] if isinstance(passed, bytes) else list(passed)
                out = [o for piece in pieces if piece for o in guard.feed(piece)]
                return out + list(guard.feed(b"")) if data == b"" else out

            response.stream = chained
        else:
            response.stream = guard.feed  # pieces go on as they are decoded and scored
        flow.metadata[_STREAMED] = guard

    def _refuse_unreadable(
        self, flow: http.HTTPFlow, kind: Kind, why: str, at_headers: bool
    ) -> None:
        """A page to stream whose encoding cannot be read: refused, not passed as scored."""
        self.blocked += 1
        if at_headers:
            serve_at_headers(flow, self._could_not_check(flow, why))
            return
        # Past the hold bound (addons/limits.py): the head is about to go on; a notice in
        # place of the body, and the connection ends.
        flow.metadata[DECISION] = self._not_read(flow, why)
        stopped: list[bool] = []

        def refuse(data: bytes) -> bytes:
            if stopped:
                return b""
            stopped.append(True)
            with contextlib.suppress(exceptions.ControlException):
                flow.kill()
            return notice_of(kind, "Schoolgate stopped this: it could not be checked.")

        if flow.response is not None:
            flow.response.stream = refuse

    def _could_not_check(self, flow: http.HTTPFlow, why: str) -> http.Response:
        """The block page for a page that could not be read (and the log's line for it)."""
        decision = self._not_read(flow, why)
        return serve_block(self.loader, flow, decision, "This page could not be checked.")

    @staticmethod
    def _not_read(flow: http.HTTPFlow, why: str) -> Decision:
        """The log's line and the decision for a page that could not be read."""
        flow.metadata[CONTENT] = ContentVerdict(f"blocked: {why}", {}, ())
        return Decision.block(identity_of(flow), f"content analysis: {why}", by="content")

    def response(self, flow: http.HTTPFlow) -> None:
        guard = flow.metadata.pop(_STREAMED, None)
        if isinstance(guard, StreamScorer) and CONTENT not in flow.metadata:
            so_far = guard.running.scores
            flow.metadata[CONTENT] = ContentVerdict(
                "passed (streamed)", so_far.by_category, tuple(h.phrase for h in so_far.hits[:10])
            )
        mime = flow.metadata.pop(_HOLD, None)
        flow.metadata.pop(_STREAM_PAST_HOLD, None)
        if guard is not None:
            return  # held, then scored as it streamed past the hold bound (addons/limits.py)
        if mime is None or flow.response is None or answered(flow):
            return
        rule = self._rule(flow)
        scorer = self.loader.filterset.policy.content
        if rule is None or scorer is None:
            return
        raw = flow.response.raw_content
        if flow.response.stream or (
            raw is not None and len(raw) > ctx.options.schoolgate_content_hold_kb * 1024
        ):
            # Streamed past the hold bound with no scorer (addons/limits.py could not start
            # one: the reason is logged already when it is known).
            if CONTENT not in flow.metadata:
                flow.metadata[CONTENT] = ContentVerdict("unscored: too large", {}, ())
            return
        entry = _entry_of(flow)
        learned = self._in_force().get(entry) if entry else None
        if learned is not None and learned.state == "rejected":
            flow.metadata[CONTENT] = ContentVerdict("passed: rejected list entry", {}, ())
            return
        try:
            # Hashed only for a page with a URL to remember it by.
            key = _score_key(entry, flow.response) if entry else None
            scores = self._scores.get(key) if key else None
            if scores is None:
                limit = ctx.options.schoolgate_content_hold_kb * 1024 * DECODED_PER_HELD
                scores = scorer.score_readings(held_page_texts(flow.response, mime, limit))
                self.scored += 1
                if key:
                    self._remember(key, scores)
        except (TooLarge, Unreadable, charset.TooManyCharsets) as exc:
            # A page that decodes to more than any page holds, or not at all: not read, so
            # not passed (a compression bomb would otherwise be decoded whole on this path).
            log.warning(
                "content analysis: %s: %s; blocking the page", flow.request.pretty_host, exc
            )
            self._could_not_check(flow, str(exc))
            return
        except Exception:
            # Could not read it must not mean allowed, for the groups that asked for analysis.
            log.exception("content analysis failed; blocking the page")
            decision = Decision.block(identity_of(flow), "content analysis failed", by="content")
            serve_block(self.loader, flow, decision, "This page could not be checked.")
            return
        self._act(flow, rule, scores, entry)

    # ---- acting --------------------------------------------------------------------------

    def _remember(self, key: tuple[str, str, str, bytes], scores: Scores) -> None:
        self._scores[key] = scores
        if len(self._scores) > CACHE_SIZE:
            self._scores.popitem(last=False)

    def _act(
        self, flow: http.HTTPFlow, rule: ContentRule, scores: Scores, entry: str | None
    ) -> None:
        crossed = scores.crossed(rule.threshold_for())
        if not crossed:
            phrases = tuple(hit.phrase for hit in scores.hits[:10])
            flow.metadata[CONTENT] = ContentVerdict("passed", scores.by_category, phrases)
            return
        category, score = crossed[0]
        phrases = tuple(hit.phrase for hit in scores.phrases_for(category)[:10])
        learned_list = self._in_force()
        if entry is not None and entry not in learned_list.entries:
            learned_list.add(learned_now(entry, category, score, phrases))
        if rule.action == "log":
            flow.metadata[CONTENT] = ContentVerdict("logged", scores.by_category, phrases, category)
            return
        flow.metadata[CONTENT] = ContentVerdict("blocked", scores.by_category, phrases, category)
        threshold = rule.threshold_for()[category]
        self._block(flow, category, f"the page's text scored {score} (threshold {threshold})")

    def _block(self, flow: http.HTTPFlow, category: str, why: str) -> None:
        self.blocked += 1
        words = CATEGORY_WORDS.get(category, category)
        decision = Decision.block(
            identity_of(flow), f"content analysis: {words}: {why}", by="content", category=category
        )
        serve_block(
            self.loader,
            flow,
            decision,
            f"This page was blocked because its content looked like {words}.",
        )
