"""Redaction: hosts and addresses of illegal hits appear in no service log line.

An IWF-listed host or its address must never reach any output (the journal
under systemd, a container's log). Schoolgate's own log lines never name an
illegal host, but mitmproxy's do: "Client TLS handshake failed. The client
does not trust the proxy's certificate for HOST", error lines with
``HOST:PORT``, tracebacks. So when the filter decides a host or URL illegal,
the ``Redact`` addon (``addons/redact.py``) adds the host and the address it
would connect to to ``REDACTIONS``; ``install`` replaces the logging record
factory, so every record of every logger (mitmproxy's, the root's, a
library's), however it is handled later, has its message, arguments,
exception text and stack text scrubbed: each whitespace-separated word that
contains a registered host or address becomes ``(withheld)``.

The access log is left alone: ``addons/audit.py`` withholds the host and path
of illegal lines itself, and the same host's lawful pages stay findable.
A record that cannot be formatted is withheld whole rather than let through.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

WITHHELD = "(withheld)"
# A run of characters a host, an IPv4 or IPv6 address or HOST:PORT is made of.
_TOKEN = re.compile(r"[\w.\-\[\]:%]+")
_WORD = re.compile(r"\S+")
# Loggers whose lines are written by code that withholds illegal hits itself.
_EXEMPT = ("schoolgate.access.",)


def _key(value: str) -> str:
    return value.strip().lower().strip("[]").rstrip(".")


def _candidates(token: str) -> Iterable[str]:
    """The host (or address) a token may name: itself, without a port, without brackets."""
    token = token.lower().strip(".:")
    yield token.rstrip(".")
    if token.startswith("["):
        yield token[1:].partition("]")[0]
    elif token.count(":") == 1:
        host, _, port = token.partition(":")
        if port.isdigit():
            yield host.rstrip(".")


class Redactions:
    """Hosts and addresses to withhold from logs; safe to add to from any thread."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._values)

    def __contains__(self, value: str) -> bool:
        return _key(value) in self._values

    def add(self, *values: str | None) -> None:
        """Withhold these hosts or addresses from now on (empty values are ignored)."""
        new = {_key(v) for v in values if v and _key(v)}
        if new - self._values:
            with self._lock:
                # Copy on write: readers (every log record) never take the lock.
                self._values = self._values | new

    def scrub(self, text: str) -> str:
        """``text`` with every word naming a registered host or address withheld."""
        values = self._values
        if not values or not text:
            return text

        def word(match: re.Match[str]) -> str:
            for token in _TOKEN.findall(match.group(0)):
                if any(c in values for c in _candidates(token)):
                    return WITHHELD
            return match.group(0)

        return _WORD.sub(word, text)


REDACTIONS = Redactions()
_INSTALLED: list[Callable[..., logging.LogRecord]] = []


def scrub_record(record: logging.LogRecord, redactions: Redactions = REDACTIONS) -> None:
    """Scrub one record in place: message with its arguments, exception and stack text."""
    if not redactions or record.name.startswith(_EXEMPT):
        return
    try:
        message = record.getMessage()
    except Exception:
        message = f"{record.msg} (a log line that could not be formatted, withheld)"
        message = WITHHELD if redactions.scrub(message) != message else message
    scrubbed = redactions.scrub(message)
    if scrubbed != message or record.args:
        record.msg, record.args = scrubbed, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = redactions.scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = redactions.scrub(record.stack_info)


def install(redactions: Redactions = REDACTIONS) -> None:
    """Scrub every log record this process creates, whichever logger or handler it goes to."""
    if _INSTALLED:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub_record(record, redactions)
        return record

    _INSTALLED.append(previous)
    logging.setLogRecordFactory(factory)
