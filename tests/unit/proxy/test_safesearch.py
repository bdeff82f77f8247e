"""Safe search locks: which hosts are which engine, and that a user cannot unlock them."""

from __future__ import annotations

import pytest

from proxy.safesearch import (
    GOOGLE_DOMAINS,
    CookieRule,
    force_cookies,
    force_params,
    lock_for,
)


@pytest.mark.parametrize(
    ("host", "engine"),
    [
        ("www.google.com", "google"),
        ("google.co.uk", "google"),
        ("www.google.com.au", "google"),
        ("images.google.de", "google"),
        ("www.bing.com", "bing"),
        ("bing.com", "bing"),
        ("duckduckgo.com", "duckduckgo"),
        ("html.duckduckgo.com", "duckduckgo"),
        ("www.youtube.com", "youtube"),
        ("youtubei.googleapis.com", "youtube"),
        ("search.yahoo.com", "search.yahoo.com"),
        ("uk.search.yahoo.com", "search.yahoo.com"),
        ("yandex.ru", "yandex.ru"),
    ],
)
def test_search_hosts_are_known_engines(host: str, engine: str) -> None:
    """Every Google country domain, Bing, DuckDuckGo, YouTube and unlockable engines are known."""
    lock = lock_for(host, "strict")
    assert lock is not None
    assert lock.engine == engine


@pytest.mark.parametrize(
    "host",
    [
        "mail.google.com",
        "docs.google.com",
        "notgoogle.com",
        "google.example",
        "bbc.co.uk",
        "bing.com.evil.example",
        "yahoo.com",
    ],
)
def test_other_hosts_are_left_alone(host: str) -> None:
    """Google's other services and look-alike hosts get no lock."""
    assert lock_for(host, "strict") is None


def test_the_google_list_is_shipped_whole() -> None:
    """The shipped list has Google's country domains, including the UK and the US."""
    assert len(GOOGLE_DOMAINS) > 150
    assert {"google.com", "google.co.uk", "google.ie"} <= GOOGLE_DOMAINS


@pytest.mark.parametrize(
    ("host", "level", "params", "headers"),
    [
        ("www.google.com", "strict", [("safe", "active")], []),
        ("www.google.com", "moderate", [("safe", "active")], []),
        ("www.bing.com", "strict", [("adlt", "strict")], []),
        ("www.bing.com", "moderate", [("adlt", "moderate")], []),
        ("duckduckgo.com", "strict", [("kp", "1")], []),
        ("duckduckgo.com", "moderate", [("kp", "-1")], []),
        ("www.youtube.com", "strict", [], [("YouTube-Restrict", "Strict")]),
        ("m.youtube.com", "moderate", [], [("YouTube-Restrict", "Moderate")]),
    ],
)
def test_each_engine_gets_its_own_lock(host, level, params, headers) -> None:
    """Each engine's documented parameter or header is forced at the group's level."""
    lock = lock_for(host, level)
    assert lock is not None
    assert list(lock.params) == params
    assert list(lock.headers) == headers
    assert not lock.blocked


def test_unlockable_engines_are_blocked() -> None:
    """An engine with no enforceable safe mode is marked blocked."""
    lock = lock_for("www.startpage.com", "moderate")
    assert lock is not None
    assert lock.blocked


@pytest.mark.parametrize(
    "query",
    [
        [("q", "x"), ("safe", "off")],
        [("q", "x"), ("SAFE", "off"), ("safe", "images")],
        [("safe", "off"), ("q", "x"), ("Safe", "")],
        [("q", "x")],
    ],
)
def test_a_user_cannot_switch_google_off_by_parameters(query) -> None:
    """Every spelling of the parameter is removed and the forced value appears exactly once."""
    forced = force_params(query, (("safe", "active"),))
    assert [p for p in forced if p[0].lower() == "safe"] == [("safe", "active")]
    assert ("q", "x") in forced


def test_a_user_cannot_switch_bing_off_by_cookie() -> None:
    """The ADLT value inside Bing's SRCHHPGUSR cookie is forced; other values stay."""
    rule = (CookieRule("SRCHHPGUSR", "ADLT", "STRICT"),)
    cookies = force_cookies([("SRCHHPGUSR", "SRCHLANG=en&ADLT=OFF&adlt=off"), ("x", "1")], rule)
    assert cookies == [("SRCHHPGUSR", "SRCHLANG=en&ADLT=STRICT"), ("x", "1")]


def test_a_user_cannot_switch_duckduckgo_off_by_cookie() -> None:
    """DuckDuckGo's p cookie (its safe search setting) is forced."""
    rule = (CookieRule("p", None, "1"),)
    assert force_cookies([("p", "-2"), ("ae", "d")], rule) == [("p", "1"), ("ae", "d")]


def test_cookies_already_right_are_left_alone() -> None:
    """No change is reported when the cookies already carry the forced values."""
    rule = (CookieRule("p", None, "1"),)
    assert force_cookies([("p", "1")], rule) is None
    assert force_cookies([("other", "1")], rule) is None
