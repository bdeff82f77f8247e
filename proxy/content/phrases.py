"""The weighted phrase lists, compiled for Hyperscan, and a page's scores.

The file (``config/content-phrases.yaml``) gives, per category, phrases with
positive or negative weights and exception phrases, in any of the languages
the concerning-terms list covers. A page's score in a category is the sum of
the weights of the occurrences of its phrases (as e2guardian counts its
"naughtiness", but each phrase at most ``POSITIVE_CAP`` times), so a page that
says "porn" once in passing scores little and one made of such phrases a
lot; a negative phrase ("sex education", "breast cancer") pulls it down. An
exception phrase that occurs sets the category's score to nothing for that page.

Matching folds text much as ``proxy.incidents.searchterms`` does for
searches — case, accents, look-alike letters and digits (``p0rn`` = ``porn``)
— but by whole words: a phrase matches only between spaces (or marks, see
``PhraseScorer``), so "sex" never matches "Essex" and "rape" never matches
"grape". Repeated letters are not collapsed on pages (a search box's "pornnn"
is a trick; a page's is a typo). Everything is done with C-implemented steps
(``str.encode`` with an error handler, ``bytes.translate``, Hyperscan)
because a 100 KB page must score in a couple of milliseconds on the request
path: folding about 0.15 ms and matching about 0.15 ms here (``bench.content``;
the Aho-Corasick automaton this replaced, over the text split and joined
again, took about 1.4 ms).
"""

from __future__ import annotations

import codecs
import functools
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, cast

import hyperscan
from pydantic import BaseModel, ConfigDict, StringConstraints

from proxy.incidents.searchterms import LOOKALIKE
from proxy.memo import short_keys
from proxy.yamlfile import ConfigError, Problem, load_yaml, validate

PHRASES_FILE = "content-phrases.yaml"
MIN_PHRASE_CHARS = 3
MAX_WEIGHT = 1000

# The categories a phrase file may score, in plain words for block pages and the console.
CATEGORY_WORDS = {
    "adult": "adult content",
    "self_harm": "self-harm or suicide",
    "extremism": "extremism or terrorism",
    "drugs": "drugs",
    "gambling": "gambling",
    "weapons": "weapons",
    "bullying": "bullying or hate",
}

# Marks and characters a reader never sees, removed so the letters either side join: accents
# and other combining marks, and the invisible format characters (zero-width spaces and
# joiners, the soft hyphen, direction marks and embeddings, word joiners, fillers, tags),
# with which "p\u00adorn" shows "porn".
_COMBINING = re.compile(r"[\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f"
                        r"\u0670\u06d6-\u06ed\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f"
                        r"\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb"
                        r"\U000e0000-\U000e007f]+")  # fmt: skip
_NOT_WORD = re.compile(r"[\W_]+")
# Look-alike letters outside ASCII (Cyrillic, Greek, ł, ø): mapped inside the non-ASCII runs.
_WIDE_LOOKALIKE = {code: to for code, to in LOOKALIKE.items() if code > 0x7F}


def _ascii_table() -> bytes:
    """ASCII folded in one ``bytes.translate``: lower case, digits as letters, the rest a space.

    Only letters and digits map to letters: on a page "videos!!" is punctuation, not
    "videosii" (a search box is another matter: ``searchterms`` maps symbols too).
    """
    table = bytearray(range(256))
    for code in range(0x80):
        char = chr(code).lower()
        table[code] = ord(char) if char.isalnum() else 0x20
        mapped = LOOKALIKE.get(ord(char))
        if char.isalnum() and isinstance(mapped, str):
            table[code] = ord(mapped)
    return bytes(table)


_ASCII = _ascii_table()
# Shows the letters after it in reverse order: "\u202enrop" shows "porn".
RIGHT_TO_LEFT_OVERRIDE = "\u202e"
# Control characters a browser shows as nothing (all of C0 but the white space).
INVISIBLE_CONTROLS = "".join(chr(code) for code in range(0x20) if chr(code) not in "\t\n\v\f\r")
# Where two pieces of a page's text meet (``proxy.content.extract``): a space in one reading,
# nothing in the other. The other invisible controls fold to it.
MARK = "\x01"
_MARKED = bytes(
    0x01 if chr(code) in INVISIBLE_CONTROLS else byte for code, byte in enumerate(_ASCII)
)
# How often one phrase counts on a page. e2guardian counts every occurrence, and so a manual
# that says "slots" 26 times scored as a casino; a page of the kind is made of many phrases,
# not one repeated. A negative phrase counts less often still, so a page cannot launder itself
# by repeating "safeguarding".
POSITIVE_CAP = 5
NEGATIVE_CAP = 3


# Short runs repeat (a page's no-break spaces, dashes and quotes, a language's common
# words): kept, up to 8,192 of them. A long run (a paragraph of Chinese has no ASCII space
# in it) is folded every time and never kept, so the cache stays under a few megabytes.
@short_keys(maxsize=8192, longest=64)
def _fold_wide(run: str) -> bytes:
    """A run of non-ASCII characters folded, as UTF-8."""
    folded = unicodedata.normalize("NFKC", run).casefold()
    folded = _COMBINING.sub("", unicodedata.normalize("NFKD", folded))
    return _NOT_WORD.sub(" ", folded.translate(_WIDE_LOOKALIKE)).encode("utf-8")


def _fold_error(error: UnicodeError) -> tuple[bytes, int]:
    """The ASCII encoder's error handler: each run of non-ASCII characters, folded."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return _fold_wide(error.object[error.start : error.end]), error.end


_FOLD_ERRORS = "schoolgate-fold"
codecs.register_error(_FOLD_ERRORS, _fold_error)


def fold(text: str) -> str:
    """Text as matched: folded words joined by single spaces, with a space at each end.

    The non-ASCII runs (rare in most pages) get Unicode's treatment — NFKC, case folding,
    accents dropped, look-alikes mapped, punctuation made a space — and then the whole text
    is folded as bytes: UTF-8 leaves every ASCII byte alone in multi-byte characters, so
    one ``bytes.translate`` and ``split`` do the rest. The runs are found by the ASCII
    encoder itself, which calls the error handler above once per run of characters it
    cannot encode (and copies ASCII at C speed): a regular expression looking for them
    took 0.5-1 ms of a 100 KB page's 1 ms fold (``python -m bench.content``); the whole
    fold now takes about 0.55 ms. ``str.translate`` with a dict took 6 ms and a
    per-character loop 30 ms.
    """
    words = text.encode("ascii", _FOLD_ERRORS).translate(_ASCII).split()
    return (b" " + b" ".join(words) + b" ").decode("utf-8")


def folded(text: str) -> bytes:
    """Text as matched, as bytes: ``fold`` without its joining of words, and with each mark
    (``MARK``, and the invisible controls) kept as ``\x01``. The matching patterns take runs
    of spaces and marks as they come, so the page is not split and joined again (that alone
    cost more than matching it)."""
    return text.encode("ascii", _FOLD_ERRORS).translate(_MARKED)


# In a pattern: what stands between two words (spaces, or marks read as spaces), what stands
# around a phrase, and what may stand between two letters of a word (marks read as nothing).
_BETWEEN_WORDS = rb"[ \x01]+"
_EDGE = rb"[ \x01]"
_INSIDE_WORD = rb"\x01*"
# Two letters with marks between them ("p|orn"): the only places where reading a mark as
# nothing can find a phrase that reading it as a space does not. Folded text holds nothing but
# spaces, marks, ASCII letters and digits and UTF-8's bytes; the letters spelt out make a
# pattern Hyperscan scans twice as fast as "not a space or a mark".
_JUNCTION = rb"[a-z0-9\x80-\xff]\x01+[a-z0-9\x80-\xff]"


def _pattern(key: str, inside_word: bytes) -> bytes:
    """The Hyperscan pattern for a folded phrase, its letters joined by ``inside_word``."""

    def letter(char: str) -> bytes:
        return b"".join(b"\\x%02x" % byte for byte in char.encode("utf-8"))

    words = (inside_word.join(map(letter, word)) for word in key.split())
    return _EDGE + _BETWEEN_WORDS.join(words) + _EDGE


def _around(data: bytes, places: list[int], words: int) -> list[tuple[int, int]]:
    """Byte ranges of ``data`` holding the word (between spaces) at each place and ``words``
    whole words either side of it, overlapping ones merged; each starts at the space before
    its first word and ends after the space after its last (where there is one)."""
    ranges: list[tuple[int, int]] = []
    for place in places:
        start = data.rfind(b" ", 0, place) + 1
        found = data.find(b" ", place)
        end = len(data) if found < 0 else found
        for _ in range(words):
            while start > 0 and data[start - 1] == 0x20:
                start -= 1
            start = data.rfind(b" ", 0, start) + 1
            while end < len(data) and data[end] == 0x20:
                end += 1
            found = data.find(b" ", end)
            end = len(data) if found < 0 else found
        start, end = max(start - 1, 0), min(end + 1, len(data))
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
        else:
            ranges.append((start, end))
    return ranges


# Compiling the lists takes about a second (the second database, with marks allowed between
# any two letters, most of it): a worker that loads the same lists again (a policy reload that
# left them alone) uses the databases it has. They are read-only once compiled.
@functools.lru_cache(maxsize=4)
def _database(patterns: tuple[bytes, ...]) -> hyperscan.Database:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=list(patterns), ids=list(range(len(patterns))),
                     elements=len(patterns), flags=0)  # fmt: skip
    return database


@dataclass(frozen=True, slots=True)
class PhraseHit:
    """A phrase that counted on a page: its category, weight and how often it occurred."""

    category: str
    phrase: str
    weight: int
    count: int


@dataclass(frozen=True, slots=True)
class Scores:
    """A page's score per category and the phrases that made it (most weight first)."""

    by_category: dict[str, int]
    hits: tuple[PhraseHit, ...]
    excepted: frozenset[str] = field(default_factory=frozenset)

    def crossed(self, thresholds: dict[str, int]) -> list[tuple[str, int]]:
        """The categories whose score reaches their threshold, highest score first."""
        over = [
            (category, score)
            for category, score in self.by_category.items()
            if category in thresholds and score >= thresholds[category]
        ]
        return sorted(over, key=lambda item: -item[1])

    def phrases_for(self, category: str) -> list[PhraseHit]:
        return [hit for hit in self.hits if hit.category == category]


NO_SCORES = Scores({}, ())


@dataclass(frozen=True, slots=True)
class _Entry:
    category: str
    phrase: str
    weight: int  # None-like 0 never occurs: exceptions are kept apart
    exception: bool


class PhraseScorer:
    """The compiled phrase lists; ``score(text)`` gives a page's ``Scores``.

    Text may hold marks (``MARK``) where two pieces of a page's text meet: a browser may show
    a space there or nothing (``p<b>o</b>rn`` shows "porn"; a paragraph's end is parted from
    the next one's start), so a phrase counts wherever it reads with each mark as a space or
    as nothing. Two Hyperscan databases do it. The first, run over the whole text, reads
    every mark as a space, and finds the places where marks stand between two letters
    (``_JUNCTION``, a handful on most pages); the second also lets marks stand inside words,
    and is run only over the words around those places: a phrase that needs a mark read as
    nothing has such a place inside it. A match is known by its phrase and where it ends, so
    one found by both counts once.

    Hyperscan's scratch space is one thread's at a time: each thread gets its own.
    """

    def __init__(self, entries: list[_Entry]) -> None:
        self.count = len(entries)
        by_key: dict[str, list[_Entry]] = {}
        for entry in entries:
            by_key.setdefault(fold(entry.phrase).strip(), []).append(entry)
        self._found: list[tuple[_Entry, ...]] = [tuple(found) for found in by_key.values()]
        self._junction = len(self._found)
        # How many words around a junction a phrase that holds it can reach, and how many
        # bytes of folded text a phrase spans at most, with one mark between each two letters.
        self.most_words = max((len(key.split()) for key in by_key), default=1)
        self.reach = 2 * max((len(key.encode()) for key in by_key), default=0) + 2
        self._spaced: hyperscan.Database | None = None
        self._joined: hyperscan.Database | None = None
        if by_key:
            self._spaced = _database((*(_pattern(key, b"") for key in by_key), _JUNCTION))
            self._joined = _database(tuple(_pattern(key, _INSIDE_WORD) for key in by_key))
        self._scratch = threading.local()

    def _scratches(self) -> tuple[hyperscan.Scratch, hyperscan.Scratch]:
        scratches: tuple[hyperscan.Scratch, hyperscan.Scratch] | None = getattr(
            self._scratch, "pair", None
        )
        if scratches is None:
            scratches = (hyperscan.Scratch(self._spaced), hyperscan.Scratch(self._joined))
            self._scratch.pair = scratches
        return scratches

    def score(self, text: str) -> Scores:
        """Scores of a page's text (already extracted from its markup, with or without
        marks) in every category."""
        return self.score_readings([text])

    def score_readings(self, texts: list[str]) -> Scores:
        """Scores of a page read more than one way (in each charset a browser may read it
        in): each phrase counts as often as the reading that finds it most often. Text with a
        right-to-left override in it is read reversed as well: "\u202enrop" shows "porn"."""
        counts: Counter[int] = Counter()
        for text in texts:
            if self._spaced is None or not text:
                continue
            counts |= self.counts_in(text)
            if RIGHT_TO_LEFT_OVERRIDE in text:
                counts |= self.counts_in(text[::-1])
        return self.scores_of(counts) if counts else NO_SCORES

    def matches(self, data: bytes) -> set[tuple[int, int]]:
        """The phrases found in ``data`` (``folded`` text), as (phrase, where it ends)."""
        if self._spaced is None or self._joined is None:
            return set()
        found: set[tuple[int, int]] = set()
        places: list[int] = []
        junction = self._junction

        def spaced(phrase: int, _start: int, end: int, _flags: int, _context: object) -> None:
            if phrase == junction:
                places.append(end - 1)
            else:
                found.add((phrase, end))

        def joined(phrase: int, _start: int, end: int, _flags: int, offset: object) -> None:
            found.add((phrase, cast(int, offset) + end))

        spaced_scratch, joined_scratch = self._scratches()
        self._spaced.scan(data, match_event_handler=spaced, scratch=spaced_scratch)
        for start, end in _around(data, sorted(places), self.most_words):
            self._joined.scan(
                data[start:end], match_event_handler=joined, context=start, scratch=joined_scratch
            )
        return found

    def counts_in(self, text: str) -> Counter[int]:
        """How often each phrase occurs in a whole text (marks and all)."""
        return self.counts(b" " + folded(text) + b" ")

    def counts(self, data: bytes, after: int = 0) -> Counter[int]:
        """How often each phrase occurs in ``data`` (``folded`` text), counting matches that
        end past ``after`` (what a stream has already counted lies before it)."""
        return Counter(phrase for phrase, end in self.matches(data) if end > after)

    def scores_of(self, counts: Counter[int]) -> Scores:
        """The scores that phrase counts make, with the caps and exceptions applied."""
        totals: dict[str, int] = {}
        hits: list[PhraseHit] = []
        excepted: set[str] = set()
        for phrase, count in counts.items():
            for entry in self._found[phrase]:
                if entry.exception:
                    excepted.add(entry.category)
                    continue
                counted = min(count, NEGATIVE_CAP if entry.weight < 0 else POSITIVE_CAP)
                totals[entry.category] = totals.get(entry.category, 0) + entry.weight * counted
                hits.append(PhraseHit(entry.category, entry.phrase, entry.weight, counted))
        for category in excepted:
            totals[category] = 0
        hits = [hit for hit in hits if hit.category not in excepted]
        hits.sort(key=lambda hit: (-abs(hit.weight * hit.count), hit.category, hit.phrase))
        return Scores(totals, tuple(hits), frozenset(excepted))


_LAST_SEPARATOR = re.compile(r"[\W_][^\W_]*\Z")
_MARK_RUN = re.compile(rb"\x01{2,}")


class RunningScore:
    """Scores text that arrives in pieces (a streamed page, a chatbot's answer).

    A piece's last word may go on in the next piece, so it waits; the words before it are
    folded and matched after the last few words before them (so a phrase split across two
    pieces is found), and only matches that end in the new words are counted. The total is
    what ``score`` gives the whole text; the cost is that of the new text alone.
    """

    LONGEST_WORD = 1024  # an unfinished word kept past this is kept by its end only

    def __init__(self, scorer: PhraseScorer) -> None:
        self.scorer = scorer
        self.counts: Counter[int] = Counter()
        self._tail = b" "
        self._pending = ""
        self.scores = NO_SCORES

    def feed(self, text: str, *, final: bool = False) -> Scores:
        """Add the next piece (``final`` for the last) and return the scores so far."""
        joined = self._pending + text
        if final:
            complete, self._pending = joined, ""
        else:
            seam = _LAST_SEPARATOR.search(joined)
            cut = seam.start() + 1 if seam else 0
            complete, self._pending = joined[:cut], joined[cut:]
            if len(self._pending) > self.LONGEST_WORD:
                # A word this long is no phrase's: keep its end only, so a text with no
                # separator in it (a bomb of one letter) is neither held nor copied whole.
                self._pending = self._pending[-self.LONGEST_WORD :]
        if not complete:
            return self.scores
        data = self._tail + folded(complete) + (b" " if final else b"")
        self.counts += self.scorer.counts(data, after=len(self._tail))
        self._tail = self._last_words(data)
        self.scores = self.scorer.scores_of(self.counts)
        return self.scores

    def _last_words(self, data: bytes) -> bytes:
        """The end of ``data`` a phrase ending in the next piece may begin in: its last few
        words (between spaces), each run of spaces or of marks made one (they read the same)
        and each word at most ``PhraseScorer.reach`` bytes, cut where a mark may part it (a
        phrase that goes on into the next piece begins at a mark in the part kept);
        ``data``'s last byte kept."""
        words = self.scorer.most_words + 1
        reach = self.scorer.reach
        kept = []
        for word in (_MARK_RUN.sub(b"\x01", w) for w in data.rsplit(None, words)[-words:]):
            if len(word) <= reach:
                kept.append(word)
                continue
            # From a mark (which may read as a space) or, in a run of letters longer than any
            # phrase, from the end of the run, which no phrase can begin in.
            mark = word.find(b"\x01", len(word) - reach)
            kept.append(word[mark:] if mark >= 0 else word[-reach:])
        return b" " + b" ".join(kept) + (b" " if data.endswith(b" ") else b"")


# ---- the file ------------------------------------------------------------------------------

Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Phrase = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CategoryPhrases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phrases: dict[Language, dict[Phrase, int]] = {}
    exceptions: dict[Language, list[Phrase]] = {}


class PhrasesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[Key, CategoryPhrases]


def load_phrases(path: Path) -> PhraseScorer:
    """Load the phrase file; raises ``ConfigError`` with ``file:line`` per problem."""
    data, positions = load_yaml(path)
    spec = validate(PhrasesFile, data, positions)
    problems: list[Problem] = []
    entries: list[_Entry] = []

    def check(where: tuple[str | int, ...], phrase: str) -> None:
        if len(fold(phrase).strip()) < MIN_PHRASE_CHARS:
            problems.append(
                positions.problem(
                    where,
                    f"phrase {phrase!r} is too short to match safely "
                    f"(at least {MIN_PHRASE_CHARS} letters)",
                )
            )

    for category, lists in spec.categories.items():
        if category not in CATEGORY_WORDS:
            known = ", ".join(CATEGORY_WORDS)
            problems.append(
                positions.problem(
                    ("categories", category), f"unknown category {category!r} (one of {known})"
                )
            )
            continue
        for language, phrases in lists.phrases.items():
            for phrase, weight in phrases.items():
                where = ("categories", category, "phrases", language, phrase)
                check(where, phrase)
                if weight == 0 or abs(weight) > MAX_WEIGHT:
                    problems.append(
                        positions.problem(
                            where,
                            f"phrase {phrase!r}: the weight must be a whole number from "
                            f"-{MAX_WEIGHT} to {MAX_WEIGHT}, not 0",
                        )
                    )
                entries.append(_Entry(category, phrase, weight, exception=False))
        for language, words in lists.exceptions.items():
            for i, phrase in enumerate(words):
                check(("categories", category, "exceptions", language, i), phrase)
                entries.append(_Entry(category, phrase, 0, exception=True))
    if problems:
        raise ConfigError(problems)
    return PhraseScorer(entries)
