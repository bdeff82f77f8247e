"""URL normalisation: one canonical host and path for every spelling of a URL.

Evasion lives here. Every URL the proxy sees, and every entry a list holds,
goes through these functions, so that ``HTTP://WWW.Example.COM.:80/a/../b``
and ``http://www.example.com/b`` are the same string to the index.

(Placeholder body: being replaced by the full normaliser with its tests.)
"""

from __future__ import annotations

from dataclasses import dataclass


class BadURL(ValueError):
    """A URL or list entry that cannot be made canonical."""


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """A URL as the index sees it.

    ``host`` is lower-case ASCII (punycode), no trailing dot, IPv4 in dotted
    decimal, IPv6 without brackets; ``path`` starts with ``/``, has no dot
    segments and only the percent-escapes that must stay (upper-case hex),
    lower-cased for matching; ``query`` is kept as given (no leading ``?``).
    """

    scheme: str
    host: str
    port: int
    path: str
    query: str = ""

    @property
    def entry(self) -> str:
        """The form list entries take: ``host/path`` (no scheme, port or query)."""
        return self.host + self.path


def normalise_host(raw: str) -> str:
    """Canonical form of a host name or IP literal; raises ``BadURL``."""
    host = raw.strip().rstrip(".").lower()
    if not host:
        raise BadURL(f"empty host in {raw!r}")
    return host


def normalise_url(raw: str, *, default_scheme: str = "http") -> CanonicalURL:
    """Canonical form of an absolute URL (or ``host/path`` without a scheme); raises ``BadURL``."""
    from urllib.parse import urlsplit

    text = raw.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    host = normalise_host(parts.hostname or "")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return CanonicalURL(parts.scheme.lower(), host, port, (parts.path or "/").lower(), parts.query)


def normalise_entry(raw: str) -> str:
    """Canonical form of a list entry (``host`` or ``host/path``); raises ``BadURL``."""
    url = normalise_url(raw)
    return url.host if url.path == "/" and not raw.rstrip().endswith("/") else url.entry
