"""Search terms: what someone typed into a search engine, and whether it is concerning.

``extract_search`` reads the query out of a Google, Bing, DuckDuckGo,
YouTube or Yahoo search URL. ``TermMatcher`` looks for the concerning terms
of ``config/concerning-terms.yaml`` in it. Both sides go through the same
``skeleton``: case folded, accents and combining marks dropped, look-alike
letters and digits mapped to one letter (``5uic1de`` = ``suicide``),
repeated letters collapsed and the words squashed together, so spacing
tricks (``s u i c i d e``, ``sui-cide``) still match. A match must begin
and end on word boundaries of the search, so ``rapist`` never matches
``therapist``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints

from proxy.yamlfile import ConfigError, Problem, load_yaml, validate

TERMS_FILE = "concerning-terms.yaml"
MIN_TERM_CHARS = 3
MAX_QUERY_CHARS = 500

# ---- search URLs ---------------------------------------------------------------------------

_GOOGLE = re.compile(r"^(?:[a-z0-9-]+\.)*google\.(?:[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})$")
_ENGINES: tuple[tuple[str, re.Pattern[str], frozenset[str], str], ...] = (
    ("google", _GOOGLE, frozenset({"/search", "/complete/search"}), "q"),
    (
        "bing",
        re.compile(r"^(?:www\.|cn\.)?bing\.com$"),
        frozenset({"/search", "/images/search", "/videos/search", "/news/search"}),
        "q",
    ),
    (
        "duckduckgo",
        re.compile(r"^(?:html\.|lite\.|start\.)?duckduckgo\.com$"),
        frozenset({"/", "/html", "/html/", "/lite", "/lite/"}),
        "q",
    ),
    (
        "youtube",
        re.compile(r"^(?:www\.|m\.|music\.)?youtube\.com$"),
        frozenset({"/results", "/search"}),
        "search_query",
    ),
    (
        "yahoo",
        re.compile(r"^(?:[a-z]{2}\.)?search\.yahoo\.com$"),
        frozenset({"/search", "/search/images", "/search/video"}),
        "p",
    ),
)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    engine: str
    query: str


# Every path of every engine above, and a word every engine's host contains: together a
# cheap test that rules out almost every request before its URL is built and parsed.
_PATHS = frozenset().union(*(paths for _, _, paths, _ in _ENGINES))
_HOST_WORDS = ("google", "bing", "duckduckgo", "youtube", "yahoo")


def could_be_search(host: str, path: str) -> bool:
    """False only when ``extract_search`` would find no search in a URL with this host and
    path (raw, as the request has them); True does not mean it is one."""
    path = path.split("?", 1)[0].split(";", 1)[0] or "/"
    if path not in _PATHS:
        return False
    host = host.lower()
    return any(word in host for word in _HOST_WORDS)


def extract_search(url: str) -> SearchQuery | None:
    """The engine and query of a search URL, or None when ``url`` is not a search."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".").lower()
    path = parts.path.split(";", 1)[0] or "/"
    for engine, hosts, paths, param in _ENGINES:
        if hosts.match(host) and path in paths:
            for key, value in parse_qsl(parts.query, keep_blank_values=False):
                if key == param:
                    query = " ".join(value.split())[:MAX_QUERY_CHARS]
                    return SearchQuery(engine, query) if query else None
            return None
    return None


# ---- matching ------------------------------------------------------------------------------

# Look-alikes, after case folding and accent stripping: digits and symbols
# used as letters, Cyrillic and Greek letters that look Latin, and letters
# that do not decompose (ł, đ, ø). l, 1, | and ! all read as i.
LOOKALIKE = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "l": "i",
        "|": "i",
        "!": "i",
        "3": "e",
        "4": "a",
        "@": "a",
        "5": "s",
        "$": "s",
        "7": "t",
        "8": "b",
        "ł": "i",
        "đ": "d",
        "ø": "o",
        "ı": "i",
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "і": "i",
        "ѕ": "s",
        "ο": "o",
        "α": "a",
        "ε": "e",
        "ι": "i",
    }
)


@dataclass(frozen=True, slots=True)
class Skeleton:
    """Text squashed for matching, with where each word of it starts and ends."""

    text: str
    starts: frozenset[int]
    ends: frozenset[int]


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN"


def skeleton(text: str) -> Skeleton:
    """The matching form of ``text`` (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    out: list[str] = []
    starts: set[int] = set()
    ends: set[int] = set()
    in_word = False
    for raw in decomposed:
        category = unicodedata.category(raw)
        if category in {"Mn", "Cf"}:  # accents, harakat, zero-width joiners
            continue
        char = raw.translate(LOOKALIKE)
        if len(char) == 1 and _is_word_char(char):
            if not in_word:
                starts.add(len(out))
                in_word = True
            if not out or out[-1] != char:
                out.append(char)
        elif in_word:
            ends.add(len(out))
            in_word = False
    if in_word:
        ends.add(len(out))
    return Skeleton("".join(out), frozenset(starts), frozenset(ends))


@dataclass(frozen=True, slots=True)
class TermMatch:
    category: str
    language: str
    term: str


@dataclass(frozen=True, slots=True)
class _Term:
    squashed: str
    match: TermMatch


class TermMatcher:
    """The concerning terms, compiled; ``find(query)`` returns the first match or None."""

    def __init__(self, terms: list[TermMatch]) -> None:
        compiled = [_Term(skeleton(t.term).text, t) for t in terms]
        # Longer terms first: "kill myself" says more than a shorter term in it.
        self._terms = sorted(compiled, key=lambda t: -len(t.squashed))
        self.count = len(compiled)

    def find(self, query: str) -> TermMatch | None:
        text = skeleton(query)
        for term in self._terms:
            start = text.text.find(term.squashed)
            while start != -1:
                end = start + len(term.squashed)
                if start in text.starts and end in text.ends:
                    return term.match
                start = text.text.find(term.squashed, start + 1)
        return None


# ---- the file ------------------------------------------------------------------------------

Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Term = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TermsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[Key, dict[Language, list[Term]]]


def load_terms(path: Path) -> TermMatcher:
    """Load ``concerning-terms.yaml``; raises ``ConfigError`` with ``file:line`` per problem."""
    data, positions = load_yaml(path)
    spec = validate(TermsFile, data, positions)
    problems: list[Problem] = []
    terms: list[TermMatch] = []
    for category, languages in spec.categories.items():
        for language, words in languages.items():
            for i, word in enumerate(words):
                if len(skeleton(word).text) < MIN_TERM_CHARS:
                    problems.append(
                        positions.problem(
                            ("categories", category, language, i),
                            f"categories.{category}.{language}: term {word!r} is too short "
                            f"to match safely (at least {MIN_TERM_CHARS} letters)",
                        )
                    )
                terms.append(TermMatch(category, language, word))
    if problems:
        raise ConfigError(problems)
    return TermMatcher(terms)
