"""Free text on an illegal incident must never carry the address: a check for URLs and hosts.

Reviewers type a reason for concern, a conclusion, an action. On an illegal
(IWF / police-listed) incident any of them could quote the address, which
then shows in every page, export and PDF. ``mentions_address`` finds a URL,
a host name (``www.x.y``, ``x.co.uk``, ``xn--…``), an IP address, or those
written to dodge a filter (``example[.]com``, ``example dot com``), so the
caller can refuse the text with a one-line reason.
"""

from __future__ import annotations

import re

# "example[.]com", "example(.)com", "example {dot} com", "example dot com" → "example.com"
_DODGES = re.compile(
    r"\s*(?:\[\s*\.\s*\]|\(\s*\.\s*\)|\{\s*\.\s*\}|[\[\({]?\s*\bdot\b\s*[\]\)}]?)\s*", re.I
)
_SCHEME = re.compile(r"\b[a-z][a-z0-9+.-]*://", re.I)
# A label, a dot, …, and a top-level domain of letters (two or more) or punycode.
_HOST = re.compile(
    r"(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})(?![\w-])",
    re.I,
)
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
# Words with a dot that are not hosts in a school's notes ("e.g.", "i.e." have one-letter parts
# and never match); a few two-letter abbreviations would: keep them out.
_NOT_HOSTS = frozenset({"a.m", "p.m", "ph.d", "no.no"})


def mentions_address(text: str | None) -> str | None:
    """The first URL, host or address in ``text`` (as written), or None."""
    if not text:
        return None
    if found := _SCHEME.search(text):
        return found.group(0)
    for candidate in (text, _DODGES.sub(".", text)):
        for pattern in (_IPV4, _HOST):
            for found in pattern.finditer(candidate):
                word = found.group(0)
                if word.lower().rstrip(".") in _NOT_HOSTS:
                    continue
                return word
    return None


REFUSAL = (
    "this is an illegal-list incident: write no web address or site name "
    "(the record keeps the list and its reference instead)"
)
