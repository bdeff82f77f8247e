"""Search capture: each engine's query, and concerning terms that survive tricks."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from proxy.incidents.searchterms import (
    SearchQuery,
    could_be_search,
    extract_search,
    load_terms,
    skeleton,
)
from proxy.yamlfile import ConfigError

ROOT = Path(__file__).resolve().parents[4]
TERMS = load_terms(ROOT / "config" / "concerning-terms.yaml")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.google.co.uk/search?q=volcano+facts&hl=en",
            SearchQuery("google", "volcano facts"),
        ),
        ("https://www.google.com/search?client=x&q=a%20b", SearchQuery("google", "a b")),
        (
            "https://www.bing.com/search?q=homework+help&form=QBLH",
            SearchQuery("bing", "homework help"),
        ),
        ("https://duckduckgo.com/?q=rivers&ia=web", SearchQuery("duckduckgo", "rivers")),
        ("https://html.duckduckgo.com/html/?q=rivers", SearchQuery("duckduckgo", "rivers")),
        (
            "https://www.youtube.com/results?search_query=times+tables",
            SearchQuery("youtube", "times tables"),
        ),
        ("https://uk.search.yahoo.com/search?p=weather", SearchQuery("yahoo", "weather")),
        ("https://search.yahoo.com/search;_ylt=abc?p=weather", SearchQuery("yahoo", "weather")),
    ],
)
def test_each_engine_gives_its_query(url: str, expected: SearchQuery) -> None:
    """The query is read from the parameter each engine uses."""
    assert extract_search(url) == expected
    # ...and the request path's cheap test, on the raw host and path, lets it through.
    parts = urlsplit(url)
    path = parts.path + "?" + parts.query  # urlsplit leaves ";params" in the path
    assert could_be_search(parts.netloc.upper(), path)


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("www.bbc.co.uk", "/search?q=x"),
        ("www.google.com", "/maps?q=london"),
        ("www.google.com", "/searching?q=x"),
        ("example.com", "/"),
    ],
)
def test_the_cheap_test_rules_out_what_is_no_search(host: str, path: str) -> None:
    """Another host, or another path, is ruled out before any URL is parsed."""
    assert not could_be_search(host, path)


@pytest.mark.parametrize(
    "url",
    [
        "https://www.google.co.uk/maps?q=london",
        "https://www.google.co.uk/search?hl=en",
        "https://www.google.evil.example/search?q=x",
        "https://notgoogle.com/search?q=x",
        "https://www.youtube.com/watch?v=abc",
        "https://www.bing.com/search?q=",
        "https://duckduckgo.com/about",
        "not a url at all",
    ],
)
def test_other_urls_are_not_searches(url: str) -> None:
    """Maps, videos, look-alike hosts and empty queries are not captured."""
    assert extract_search(url) is None


@pytest.mark.parametrize(
    ("query", "category"),
    [
        ("how to kill myself", "suicide"),
        ("HOW TO KILL MYSELF", "suicide"),
        ("s u i c i d e", "suicide"),
        ("sui-cide", "suicide"),
        ("sui.cide methods", "suicide"),
        ("5uic1de", "suicide"),
        ("suiiiicide", "suicide"),
        ("ki11 mysélf", "suicide"),
        ("ѕuicide", "suicide"),  # Cyrillic dze for s
        ("samobojstwo", "suicide"),  # Polish without its accent
        ("jak sie zabic", "suicide"),
        ("cum sa ma sinucid", "suicide"),  # Romanian without its accents
        ("كيف أنتحر", "suicide"),
        ("خود کشی", "suicide"),  # Urdu, written with a space
        ("khudkushi", "suicide"),
        ("ਖੁਦਕੁਸ਼ੀ ਕਿਵੇਂ", "suicide"),  # Punjabi (Gurmukhi)
        ("আত্মহত্যা", "suicide"),  # Bengali
        ("self harm tips", "self_harm"),
        ("self-harm", "self_harm"),
        ("samookaleczenie", "self_harm"),
        ("autovatamare", "self_harm"),
        ("how to make a bomb at home", "extremism"),
        ("join isis", "extremism"),
        ("jak zrobić bombę", "extremism"),
        ("someone is hurting me at home", "abuse"),
        ("যৌন নির্যাতন", "abuse"),
        ("sunt abuzată", "abuse"),
    ],
)
def test_concerning_terms_survive_tricks(query: str, category: str) -> None:
    """Case, accents, look-alikes, repeated letters and spacing do not hide a term."""
    found = TERMS.find(query)
    assert found is not None
    assert found.category == category


@pytest.mark.parametrize(
    "query",
    [
        "therapist near me",
        "pro analysis of shakespeare",
        "kill lessons",
        "volcano facts",
        "selfie harmony",
        "die hard film",
        "جرح نفسي عميق",  # Arabic "deep psychological wound", not self-harm
        "mă bate gândul",  # Romanian "I'm thinking of", not "he beats me"
    ],
)
def test_innocent_searches_do_not_match(query: str) -> None:
    """A term must start and end on word boundaries, so words that contain one do not match."""
    assert TERMS.find(query) is None


def test_every_language_is_covered() -> None:
    """Each category has terms in English and the languages UK schools commonly need."""
    import yaml

    data = yaml.safe_load((ROOT / "config" / "concerning-terms.yaml").read_text(encoding="utf-8"))
    assert set(data["categories"]) == {"suicide", "self_harm", "extremism", "abuse"}
    for languages in data["categories"].values():
        assert {"en", "pl", "ur", "pa", "ro", "ar", "bn"} <= set(languages)


def test_skeleton_marks_word_boundaries() -> None:
    """The skeleton squashes words together and remembers where each began and ended."""
    s = skeleton("Kill  ME")
    assert s.text == "kime"
    assert s.starts == {0, 2}
    assert s.ends == {2, 4}


def test_a_too_short_term_is_an_error_by_line(tmp_path: Path) -> None:
    """A term of fewer than three letters would match too much: rejected with its line."""
    path = tmp_path / "terms.yaml"
    path.write_text(
        "categories:\n  suicide:\n    en:\n      - die\n      - 'a.b'\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_terms(path)
    assert str(caught.value).startswith(f"{path}:5: categories.suicide.en: term 'a.b' is too short")
