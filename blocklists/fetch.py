"""Fetching a list source over HTTP(S) into a local file, checked for truncation.

Credentials come as one string: ``USER:PASSWORD`` is sent as HTTP Basic, anything
else as a bearer token. They never appear in an error message or a log line, and
neither does a URL's userinfo or query string (``redact_url``).
"""

from __future__ import annotations

import base64
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from blocklists.formats import ListError

MAX_BYTES = 2 << 30  # 2 GiB: UT1's full archive is about 20 MB
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def redact_url(url: str) -> str:
    """The URL without userinfo and query: safe for logs and the change log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def auth_header(credentials: str) -> str:
    """The ``Authorization`` value for a credentials string."""
    if ":" in credentials:
        token = base64.b64encode(credentials.encode()).decode()
        return f"Basic {token}"
    return f"Bearer {credentials}"


def fetch(url: str, dest: Path, *, credentials: str | None = None) -> int:
    """Download ``url`` to ``dest`` (a temporary name the caller renames); returns its size.

    Raises ``ListError`` for a scheme other than http/https, an HTTP error, a body
    shorter than its ``Content-Length`` (truncated), or one over ``MAX_BYTES``.
    """
    shown = redact_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ListError(f"{shown}: only http and https sources can be fetched")
    request = urllib.request.Request(url, headers={"User-Agent": "schoolgate-lists/1"})
    if credentials:
        request.add_unredirected_header("Authorization", auth_header(credentials))
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            expected = response.headers.get("Content-Length")
            with dest.open("wb") as out:
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise ListError(f"{shown}: larger than {MAX_BYTES} bytes; refused")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        raise ListError(f"{shown}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ListError(f"{shown}: cannot fetch: {exc.reason}") from None
    except (http.client.HTTPException, OSError) as exc:
        # IncompleteRead, RemoteDisconnected, timeouts: the body did not arrive whole
        raise ListError(f"{shown}: transfer failed ({type(exc).__name__}): truncated?") from None
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise ListError(f"{shown}: got {size} of {expected} bytes: truncated; refused")
    if size == 0:
        raise ListError(f"{shown}: empty response; refused")
    return size
