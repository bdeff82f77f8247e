"""Safe search, locked on: which engine a host is, and how to force its safe mode.

Pure functions, no mitmproxy: ``lock_for(host, level)`` says what a request
to that host must carry (query parameters, headers, cookie values), or that
the engine cannot be locked and is blocked; ``force_params`` and
``force_cookies`` apply it to the pairs of a request. A user cannot switch
safe search off: whatever they send for the same parameter, header or
cookie is replaced, in any letter case.

| engine | how it is locked |
|---|---|
| Google, every domain in ``data/google-domains.txt`` | ``safe=active`` |
| Bing | ``adlt=strict`` (or ``moderate``); the ``ADLT`` value in the ``SRCHHPGUSR`` cookie |
| DuckDuckGo | ``kp=1`` (moderate ``kp=-1``); the ``p`` settings cookie |
| YouTube | ``YouTube-Restrict: Strict`` (or ``Moderate``) on its web and API hosts |
| engines in ``UNLOCKABLE`` | blocked while safe search is on |

Google has one lockable level, so ``moderate`` and ``strict`` both send
``safe=active`` there.

Without decryption (``tunnel_target``), the tunnel to an engine is connected
to the address of the engine's own locked service instead:
``forcesafesearch.google.com``, ``strict.bing.com``, ``restrict.youtube.com``
(``restrictmoderate.youtube.com`` for moderate) and ``safe.duckduckgo.com``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Level = Literal["moderate", "strict"]
Pairs = Sequence[tuple[str, str]]


def _load_google_domains() -> frozenset[str]:
    text = resources.files("proxy").joinpath("data/google-domains.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


GOOGLE_DOMAINS = _load_google_domains()
# Search lives on the bare domain and these subdomains; mail, docs, accounts are left alone.
GOOGLE_SEARCH_SUBDOMAINS = frozenset({"", "www", "images", "encrypted"})
BING = ("bing.com",)
DUCKDUCKGO = ("duckduckgo.com", "duck.com")
# Google's documented list of the hosts that honour the YouTube-Restrict header.
YOUTUBE_HOSTS = frozenset(
    {
        "www.youtube.com",
        "m.youtube.com",
        "youtube.com",
        "youtubei.googleapis.com",
        "youtube.googleapis.com",
        "www.youtube-nocookie.com",
    }
)
# Search engines with no setting a gateway can force: blocked while safe search is on.
UNLOCKABLE = (
    "search.yahoo.com",
    "yandex.com",
    "yandex.ru",
    "ask.com",
    "startpage.com",
    "ecosia.org",
    "qwant.com",
    "search.brave.com",
    "baidu.com",
    "mojeek.com",
    "yep.com",
    "search.aol.com",
    "dogpile.com",
    "metacrawler.com",
    "webcrawler.com",
)


@dataclass(frozen=True, slots=True)
class CookieRule:
    """Force a cookie's value, or one ``KEY=VALUE`` inside an ``&``-joined cookie value."""

    name: str
    key: str | None
    value: str


@dataclass(frozen=True, slots=True)
class Lock:
    """What a request to one engine must carry, or ``blocked`` when it cannot be locked."""

    engine: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    cookies: tuple[CookieRule, ...] = ()
    blocked: bool = False


def _under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _google_subdomain(host: str) -> str | None:
    """``www`` for www.google.co.uk, ``""`` for google.com, None for anything not Google's."""
    labels = host.split(".")
    for i in range(len(labels) - 1):
        if ".".join(labels[i:]) in GOOGLE_DOMAINS:
            return ".".join(labels[:i])
    return None


def lock_for(host: str, level: Level) -> Lock | None:
    """The lock a request to ``host`` (canonical: lower case, no port) needs, if any."""
    host = host.rstrip(".")
    sub = _google_subdomain(host)
    if sub is not None and sub in GOOGLE_SEARCH_SUBDOMAINS:
        return Lock("google", params=(("safe", "active"),))
    if host in YOUTUBE_HOSTS:
        return Lock("youtube", headers=(("YouTube-Restrict", level.capitalize()),))
    if any(_under(host, d) for d in BING):
        return Lock(
            "bing",
            params=(("adlt", level),),
            cookies=(CookieRule("SRCHHPGUSR", "ADLT", level.upper()),),
        )
    if any(_under(host, d) for d in DUCKDUCKGO):
        value = "1" if level == "strict" else "-1"
        return Lock("duckduckgo", params=(("kp", value),), cookies=(CookieRule("p", None, value),))
    for domain in UNLOCKABLE:
        if _under(host, domain):
            return Lock(domain, blocked=True)
    return None


# Where each engine's own safe mode is served, for TLS that is not decrypted: the tunnel
# is connected to this name's address, as DNS-based filters and appliances answer the
# engine's names; the browser still asks for www.google.com, and the certificate there
# is valid for it (Google, Microsoft and DuckDuckGo document these names for schools).
TUNNEL_TARGETS = {
    ("google", "strict"): "forcesafesearch.google.com",
    ("google", "moderate"): "forcesafesearch.google.com",
    ("bing", "strict"): "strict.bing.com",
    ("bing", "moderate"): "strict.bing.com",  # Bing offers only strict by address
    ("youtube", "strict"): "restrict.youtube.com",
    ("youtube", "moderate"): "restrictmoderate.youtube.com",
    ("duckduckgo", "strict"): "safe.duckduckgo.com",
    ("duckduckgo", "moderate"): "safe.duckduckgo.com",
}


def tunnel_target(host: str, level: Level) -> str | None:
    """The name whose address locks ``host``'s safe search without decryption, if any."""
    lock = lock_for(host, level)
    if lock is None or lock.blocked:
        return None
    return TUNNEL_TARGETS.get((lock.engine, level))


def force_params(pairs: Iterable[tuple[str, str]], forced: Pairs) -> list[tuple[str, str]]:
    """``pairs`` without any spelling of the forced keys, then the forced pairs once each."""
    keys = {key.lower() for key, _ in forced}
    return [(k, v) for k, v in pairs if k.lower() not in keys] + list(forced)


def _force_subkey(value: str, key: str, forced: str) -> str:
    parts = [p for p in value.split("&") if p and p.partition("=")[0].upper() != key.upper()]
    return "&".join([*parts, f"{key}={forced}"])


def force_cookies(
    pairs: Iterable[tuple[str, str]], rules: Sequence[CookieRule]
) -> list[tuple[str, str]] | None:
    """The cookies with each rule's value forced where the cookie is present; None if unchanged.

    An absent cookie stays absent: the forced query parameter already decides.
    """
    if not rules:
        return None
    changed = False
    result = []
    for name, value in pairs:
        new = value
        for rule in rules:
            if name.lower() != rule.name.lower():
                continue
            new = rule.value if rule.key is None else _force_subkey(new, rule.key, rule.value)
        changed = changed or new != value
        result.append((name, new))
    return result if changed else None
