"""Redaction of illegal hosts and addresses from log records."""

from __future__ import annotations

import logging
import sys

import pytest

from proxy.redaction import WITHHELD, Redactions, scrub_record


@pytest.fixture
def redactions() -> Redactions:
    found = Redactions()
    found.add("Illegal-Demo.example.", "203.0.113.9", "[2001:db8::7]", None, "")
    return found


@pytest.mark.parametrize(
    "text",
    [
        "certificate for illegal-demo.example (tlsv1 alert unknown ca)",
        "127.0.0.2:5555: server connect illegal-demo.example:443 failed",
        "GET http://ILLEGAL-DEMO.EXAMPLE/abuse/x.jpg",
        "connect to 203.0.113.9:443 refused",
        "peer ('203.0.113.9', 443) gone",
        "address [2001:db8::7]:443",
        "address 2001:db8::7",
        "'illegal-demo.example.'",
    ],
)
def test_a_word_naming_a_registered_host_or_address_is_withheld(
    redactions: Redactions, text: str
) -> None:
    """Every spelling of a registered host or address in a line is withheld with its word."""
    scrubbed = redactions.scrub(text)
    assert WITHHELD in scrubbed
    for needle in ("illegal-demo", "203.0.113.9", "2001:db8", "/abuse/"):
        assert needle not in scrubbed.lower()


@pytest.mark.parametrize(
    "text",
    ["certificate for legal-demo.example", "203.0.113.90:443", "not-illegal-demo.example.org"],
)
def test_other_hosts_are_left_alone(redactions: Redactions, text: str) -> None:
    """Hosts and addresses that merely look alike are not withheld."""
    assert redactions.scrub(text) == text


def test_a_record_has_its_arguments_and_traceback_scrubbed(redactions: Redactions) -> None:
    """A record's arguments and exception text are scrubbed, not only its format string."""
    try:
        raise OSError("cannot reach illegal-demo.example")
    except OSError:
        record = logging.LogRecord(
            "mitmproxy.proxy.server",
            logging.WARNING,
            __file__,
            1,
            "%s: failed for %s",
            ("127.0.0.2:5555", "illegal-demo.example"),
            None,
        )
        record.exc_info = sys.exc_info()
    scrub_record(record, redactions)
    assert record.getMessage() == f"127.0.0.2:5555: failed for {WITHHELD}"
    assert record.exc_text is not None
    assert "illegal-demo" not in record.exc_text
    assert "OSError" in record.exc_text


def test_the_access_log_is_left_to_the_audit(redactions: Redactions) -> None:
    """The access log's own lines are not touched (the audit withholds illegal lines itself)."""
    record = logging.LogRecord(
        "schoolgate.access.1", logging.INFO, __file__, 1, "illegal-demo.example", (), None
    )
    scrub_record(record, redactions)
    assert record.getMessage() == "illegal-demo.example"
