"""Fetching list sources: credentials are sent, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocklists.fetch import auth_header, fetch, redact_url
from blocklists.formats import ListError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@lists.example/a.tar.gz", "https://lists.example/a.tar.gz"),
        ("https://lists.example/a.txt?token=SECRET", "https://lists.example/a.txt"),
        ("http://lists.example:8080/x", "http://lists.example:8080/x"),
    ],
)
def test_redact_url_drops_userinfo_and_query(url: str, shown: str) -> None:
    """Logs and the change log see the URL without passwords or tokens."""
    assert redact_url(url) == shown


def test_user_and_password_are_sent_as_basic_auth() -> None:
    """USER:PASSWORD becomes HTTP Basic; anything else a bearer token."""
    assert auth_header("a:b") == "Basic YTpi"
    assert auth_header("tok3n") == "Bearer tok3n"


def test_only_http_and_https_are_fetched(tmp_path: Path) -> None:
    """A file: or ftp: source is refused by name, with its secrets redacted."""
    with pytest.raises(ListError, match="only http and https") as err:
        fetch("ftp://u:secret@host.example/x", tmp_path / "x")
    assert "secret" not in str(err.value)


def test_an_unreachable_server_is_a_one_line_error(tmp_path: Path) -> None:
    """A refused connection names the (redacted) URL and the reason."""
    with pytest.raises(ListError, match=r"http://127\.0\.0\.1:9/x: cannot fetch"):
        fetch("http://127.0.0.1:9/x?key=secret", tmp_path / "x")
