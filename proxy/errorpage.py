"""The pages the filter shows that are not block pages: a dead site, and short notices.

mitmproxy answers an upstream failure with a bare "502 Bad Gateway" naming
itself. This page says, in the school's name, what happened (the name does
not exist, the server refused, its certificate is not valid, it did not
answer), that the filter did not block it, and gives a reference to quote.
Pure: the failure is given as mitmproxy's error message. ``notice`` is the
same look for the login page's answers (sign in, signed in, signed out).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources
from string import Template

_TEMPLATE = Template(
    resources.files("proxy").joinpath("templates/upstream-error.html").read_text(encoding="utf-8")
)
_NOTICE = Template(
    resources.files("proxy").joinpath("templates/notice.html").read_text(encoding="utf-8")
)


@dataclass(frozen=True, slots=True)
class Failure:
    """One kind of upstream failure and what to tell the user about it."""

    kind: str
    title: str
    explanation: str
    advice: str


DNS = Failure(
    "dns",
    "This site's name could not be found",
    "The web address does not lead to any server: the name may be mistyped, or the site "
    "may no longer exist.",
    "Check the spelling of the address. If it is right, the site may be down for everyone.",
)
REFUSED = Failure(
    "refused",
    "This site refused the connection",
    "The site's server is there but would not accept the connection; it may be down or "
    "being restarted.",
    "Try again in a few minutes.",
)
TLS = Failure(
    "tls",
    "This site's secure connection is not valid",
    "The site's certificate could not be trusted, or the secure connection to it failed, so "
    "the page was not fetched: someone could be pretending to be the site.",
    "Do not enter passwords or personal details there. If the site is one your lessons "
    "need, tell the IT office.",
)
TIMEOUT = Failure(
    "timeout",
    "This site did not answer",
    "The site's server took too long to answer.",
    "Try again in a few minutes.",
)
OTHER = Failure(
    "other",
    "This site could not be reached",
    "Something went wrong between the school and the site's server.",
    "Try again; if it keeps happening, tell the IT office and give them the reference.",
)

# Words in mitmproxy's and the OS's error messages, checked in this order (asyncio says
# "[Errno 111] Connect call failed" for a refusal, getaddrinfo "[Errno -2] Name or service").
_CLUES = (
    (TLS, ("tls", "ssl", "certificate", "handshake")),
    (
        DNS,
        (
            "name or service",
            "resolve",
            "getaddrinfo",
            "nodename",
            "no address",
            "dns",
            "errno -2]",
            "errno -3]",
            "errno -5]",
        ),
    ),
    (TIMEOUT, ("timed out", "timeout", "errno 110]")),
    (REFUSED, ("refused", "unreachable", "reset", "errno 111]", "connect call failed")),
)


def classify(message: str) -> Failure:
    """Which kind of failure mitmproxy's error ``message`` describes."""
    low = message.lower()
    for failure, words in _CLUES:
        if any(word in low for word in words):
            return failure
    return OTHER


def render(message: str, *, school: str, reference: str) -> str:
    """The HTML page for an upstream failure described by ``message``."""
    failure = classify(message)
    return _TEMPLATE.substitute(
        title=html.escape(failure.title),
        explanation=html.escape(failure.explanation),
        advice=html.escape(failure.advice),
        detail=html.escape(message[:300]),
        reference=html.escape(reference),
        school=html.escape(school),
    )


def notice(title: str, text: str, *, school: str, form: str = "") -> str:
    """A short page in the school's style (the login page's answers): title, school, text.

    ``form`` is markup the caller built and escaped itself (the sign-out button), put after
    the text as it is; every other argument is escaped here.
    """
    return _NOTICE.substitute(
        title=html.escape(title), text=html.escape(text), school=html.escape(school), form=form
    )
