"""Scoring as a body streams: the same scores as the whole text, and a cut with a notice."""

from __future__ import annotations

import gzip
import json
import random
import zlib
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard

from proxy.content.assistants import assistant_of, prompt_of
from proxy.content.charset import stream_charset
from proxy.content.phrases import MARK, PhraseScorer, RunningScore, Scores, load_phrases
from proxy.content.stream import STREAM_DECODED_LIMIT, UNFINISHED_TAG, Kind, StreamScorer

ROOT = Path(__file__).resolve().parents[4]
TEXT = (
    "Free porn videos, hardcore porn, live sex cams. The best free porn and porn videos. "
    "Sex education; I want to kill myself. Ñandú p0rn "
) * 3
THRESHOLDS = {"adult": 100, "self_harm": 100}


@pytest.fixture(scope="module")
def scorer() -> PhraseScorer:
    return load_phrases(ROOT / "config" / "content-phrases.yaml")


@pytest.mark.parametrize("seed", range(20))
def test_pieces_score_as_the_whole(scorer: PhraseScorer, seed: int) -> None:
    """However the text is split, the running total equals the score of the whole."""
    pieces, rest, rng = [], TEXT, random.Random(seed)
    while rest:
        cut = rng.randint(1, 12)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    running = RunningScore(scorer)
    for piece in pieces:
        running.feed(piece)
    assert running.feed("", final=True).by_category == scorer.score(TEXT).by_category


@pytest.mark.parametrize("seed", range(40))
def test_marked_pieces_score_as_the_whole(scorer: PhraseScorer, seed: int) -> None:
    """Text with marks (each a space or nothing), long runs of spaces and marks between the
    words of a phrase, and long words, split anywhere: the running total equals the score of
    the whole."""
    rng = random.Random(seed)
    words = ["free", "porn", "po", "rn", "live", "sex", "cams", "kill", "myself", "x" * 3000,
             "the", "river"]  # fmt: skip
    gaps = [" ", "  ", MARK, MARK * 3, " " + MARK, ". ", " " * 5000, MARK * 5000, "\n"]
    text = "".join(rng.choice(words) + rng.choice(gaps) for _ in range(rng.randint(1, 300)))
    running, rest = RunningScore(scorer), text
    while rest:
        cut = rng.choice([1, 2, 7, 50, 4000])
        running.feed(rest[:cut])
        rest = rest[cut:]
    assert running.feed("", final=True) == scorer.score(text)


def stream(
    scorer: PhraseScorer,
    kind: Kind,
    chunks: list[bytes],
    encoding: str | None = None,
    limit: int = STREAM_DECODED_LIMIT,
) -> tuple[list[tuple[str, int]], bytes]:
    """Feed ``chunks`` (and the end) through a StreamScorer: what crossed (or was too large),
    and what went on."""
    crossed: list[tuple[str, int]] = []

    def on_cross(category: str, score: int, _scores: Scores) -> str:
        crossed.append((category, score))
        return "adult content"

    def on_too_large(why: str) -> None:
        crossed.append((why, 0))

    guard = StreamScorer(
        scorer, THRESHOLDS, kind, encoding, "utf-8", on_cross, on_too_large, limit=limit
    )
    out = [piece for chunk in [*chunks, b""] for piece in guard.feed(chunk)]
    return crossed, b"".join(out)


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("text/html; charset=cp037", "utf-8"),  # a label no browser knows: not EBCDIC
        ("text/html; charset=utf-7", "utf-8"),
        ("text/html; charset=latin1", "windows-1252"),  # as browsers read it
        ('text/html; charset="KOI8-R"', "koi8-r"),
        ("text/html", "utf-8"),
    ],
)
def test_a_stream_is_read_in_the_charset_a_browser_reads_it_in(
    scorer: PhraseScorer, content_type: str, charset: str
) -> None:
    """Only the header can decide for a stream; a label a browser ignores is ignored."""
    assert stream_charset(content_type) == charset
    crossed: list[str] = []

    def on_cross(category: str, _score: int, _scores: Scores) -> str:
        crossed.append(category)
        return category

    guard = StreamScorer(
        scorer, THRESHOLDS, "html", None, stream_charset(content_type), on_cross, print
    )
    list(guard.feed(f"<p>{ANSWER}</p><p>{ANSWER}</p>".encode()))
    assert crossed == ["adult"]


def sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


ANSWER = "Here are free porn videos, hardcore porn and live sex cams. END"


def test_an_answer_written_backwards_after_an_override_is_cut(scorer: PhraseScorer) -> None:
    """A right-to-left override shows what follows it reversed: an answer written so, a few
    letters an event, is read as it is shown."""
    backwards = "Sure. \u202e" + ANSWER[::-1]
    events = [{"choices": [{"delta": {"content": backwards[i : i + 4]}}]}
              for i in range(0, len(backwards), 4)]  # fmt: skip
    crossed, _out = stream(scorer, "sse", sse(events))
    assert crossed
    assert crossed[0][0] == "adult"
    forwards = [{"choices": [{"delta": {"content": ANSWER[::-1][i : i + 4]}}]}
                for i in range(0, len(ANSWER), 4)]  # fmt: skip
    assert stream(scorer, "sse", sse(forwards))[0] == []  # reversed without one: not shown so


def test_delta_events_are_joined_and_cut(scorer: PhraseScorer) -> None:
    """Token deltas split words; joined, they cross, and the stream ends with a notice."""
    events = [{"choices": [{"delta": {"content": ANSWER[i : i + 4]}}]} for i in range(0, 63, 4)]
    crossed, out = stream(scorer, "sse", sse(events))
    assert crossed
    assert crossed[0][0] == "adult"
    assert b"END" not in out
    assert out.endswith(b"data: [DONE]\n\n")
    assert b"looked like adult content" in out


def test_cumulative_events_count_each_word_once(scorer: PhraseScorer) -> None:
    """A service that resends the answer so far is scored on the answer, not its repeats."""
    answer = "free porn is a phrase I say once. " + "The weather is fine. " * 10
    events = [{"message": {"content": {"parts": [answer[:i]]}}} for i in range(5, len(answer), 5)]
    crossed, out = stream(scorer, "sse", sse(events))
    assert crossed == []
    assert out.endswith(b"data: [DONE]\n\n")


def test_a_gzip_page_is_decoded_and_cut(scorer: PhraseScorer) -> None:
    """An encoded page goes on decoded, so the notice can follow it as HTML."""
    rng = random.Random(1)  # words that do not compress away, so the calm part comes first
    calm = " ".join("".join(rng.choices("abcdefghij", k=6)) for _ in range(400))
    page = gzip.compress(f"<p>{calm}</p><p>{ANSWER}</p><p>{ANSWER}</p>".encode())
    chunks = [page[i : i + 64] for i in range(0, len(page), 64)]
    crossed, out = stream(scorer, "html", chunks, "gzip")
    assert crossed
    assert out.startswith(f"<p>{calm[:100]}".encode())
    assert out.endswith(b"looked like adult content.</p></div>")


def test_an_unknown_encoding_is_refused(scorer: PhraseScorer) -> None:
    """A body the scorer cannot decode is not silently passed as scored."""
    with pytest.raises(ValueError, match="cannot be read"):
        StreamScorer(scorer, THRESHOLDS, "html", "compress", "utf-8", lambda *_: "", print)


@pytest.mark.parametrize(
    ("body", "kind", "prompt"),
    [
        (
            {
                "messages": [
                    {"role": "system", "content": "x"},
                    {"role": "user", "content": "hi  there"},
                ]
            },
            "application/json",
            "hi there",
        ),
        (
            {"messages": [{"author": {"role": "user"}, "content": {"parts": ["web app"]}}]},
            "application/json",
            "web app",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"text": "gemini"}]}]},
            "application/json",
            "gemini",
        ),
        ({"prompt": "plain prompt"}, "application/json", "plain prompt"),
        ({"model": "x"}, "application/json", None),
    ],
)
def test_prompts_are_read_from_the_shapes_assistants_use(
    body: dict[str, object], kind: str, prompt: str | None
) -> None:
    """The last user message, or a prompt field; nothing when there is none."""
    assert prompt_of(json.dumps(body).encode(), kind) == prompt


def test_assistants_are_known_by_host_and_parent_domain() -> None:
    """A listed host covers its subdomains; others are not assistants."""
    assert assistant_of("chatgpt.com") == "chatgpt"
    assert assistant_of("beta.character.ai") == "character-ai"
    assert assistant_of("notchatgpt.com") is None


@pytest.mark.parametrize(
    "disguise",
    [
        lambda w: w[:1] + "<b>" + w[1:2] + "</b>" + w[2:],  # a letter in its own element
        lambda w: w[:1] + "<i></i>" + w[1:],  # an empty element inside the word
        lambda w: w[:1] + "<!---->" + w[1:],  # a comment inside the word
        lambda w: w[:1] + "&#" + str(ord(w[1])) + ";" + w[2:],  # a letter as a reference
        lambda w: "&amp" + w,  # a legacy reference glued to it: "&porn"
        lambda w: w[:1] + "\x01" + w[1:],  # a control character, shown as nothing
    ],
)
def test_a_streamed_page_is_read_as_the_browser_shows_it(
    scorer: PhraseScorer, disguise: Any
) -> None:
    """Words split by markup or written with references, cut across 7-byte pieces (so tags
    and references arrive in halves), still cross."""
    words = ANSWER.replace(".", " .").split(" ")
    page = ("<p>" + " ".join(disguise(w) if len(w) > 2 else w for w in words) + "</p>") * 2
    data = page.encode()
    crossed, out = stream(scorer, "html", [data[i : i + 7] for i in range(0, len(data), 7)])
    assert crossed, page[:120]
    assert crossed[0][0] == "adult"
    assert b"looked like adult content" in out


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
    ],
)
def test_a_streamed_bomb_is_cut_at_the_bound(encoding: str, compress: Any) -> None:
    """64 MiB of one letter in a few kilobytes: decoding stops just past the bound (here
    1 MiB), with the notice, not after the whole bomb was decoded and sent."""
    bomb = compress(b"<p>" + b"a" * (64 << 20))
    chunks = [bomb[i : i + 16384] for i in range(0, len(bomb), 16384)]
    crossed, out = stream(load_phrases(ROOT / "config" / "content-phrases.yaml"), "html", chunks,
                          encoding, limit=1 << 20)  # fmt: skip
    assert crossed == [("it decodes to more than 1 MiB", 0)]
    assert len(out) < 6 << 20  # what went on before the cut, and the notice
    assert out.endswith(b"it was too large to check.</p></div>")


def test_deflate_without_its_zlib_wrapper_is_read(scorer: PhraseScorer) -> None:
    """Some servers send raw deflate as "deflate"; it is read, not refused or passed."""
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = packer.compress(f"<p>{ANSWER}</p><p>{ANSWER}</p>".encode()) + packer.flush()
    crossed, _ = stream(scorer, "html", [body[:10], body[10:]], "deflate")
    assert crossed
    assert crossed[0][0] == "adult"


def test_text_without_separators_or_an_endless_tag_is_not_held(scorer: PhraseScorer) -> None:
    """One word of 8 MiB, or a tag that never closes: what waits for the next piece stays
    small (it was held and copied whole with every piece)."""
    running = RunningScore(scorer)
    for _ in range(8):
        running.feed("a" * (1 << 20))
    assert len(running._pending) <= RunningScore.LONGEST_WORD
    crossed: list[str] = []
    guard = StreamScorer(scorer, THRESHOLDS, "html", None, "utf-8", lambda *_: "", crossed.append)
    for piece in [b"<p title='", *[b"a" * (1 << 20)] * 8]:
        list(guard.feed(piece))
    assert len(guard._in_tag) <= UNFINISHED_TAG + (1 << 20)
    assert crossed == []


@pytest.mark.parametrize(("answer", "crosses"), [(ANSWER, True), ("The river is calm. END", False)])
def test_an_answer_in_one_json_document_is_held_read_and_sent_whole_or_replaced(
    scorer: PhraseScorer, answer: str, crosses: bool
) -> None:
    """Nothing goes on until the document is whole: then the answer, or the notice in its
    place (in the shape the apps read). It went on unread."""
    body = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
    crossed, out = stream(scorer, "json", [body[i : i + 9] for i in range(0, len(body), 9)])
    if crosses:
        assert crossed[0][0] == "adult"
        said = json.loads(out)["choices"][0]["message"]["content"]
        assert said == "Schoolgate stopped this because its content looked like adult content."
    else:
        assert crossed == []
        assert out == body


def test_a_body_without_a_type_is_read_unless_it_starts_as_binary_data(
    scorer: PhraseScorer,
) -> None:
    """As a browser sniffs it: text is read (and cut), binary data passes whole (it is saved,
    not shown), however many words a file of it holds."""
    page = f"<p>{ANSWER}</p>".encode() * 3
    crossed: list[str] = []

    def on_cross(category: str, *_: object) -> str:
        crossed.append(category)
        return "adult content"

    guard = StreamScorer(scorer, THRESHOLDS, "html", None, "utf-8", on_cross, print, sniff=True)
    assert b"looked like adult content" in b"".join([*guard.feed(page), *guard.feed(b"")])
    assert crossed == ["adult"]
    binary = b"\x89PNG\r\n\x1a\n\x00\x00" + page
    guard = StreamScorer(
        scorer, THRESHOLDS, "html", None, "utf-8", on_cross, print, sniff=True, limit=16
    )
    assert (
        b"".join([*guard.feed(binary[:20]), *guard.feed(binary[20:]), *guard.feed(b"")]) == binary
    )
    assert guard.binary
    assert crossed == ["adult"]  # nothing more crossed, nothing was cut at the 16-byte bound
