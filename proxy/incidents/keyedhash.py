"""The keyed hash that stands in for the URL of an illegal hit.

An illegal hit's URL is never stored, logged or shown. What is kept is an
HMAC-SHA256 of its canonical form under a key made once per install and
kept in ``data_dir`` (readable by the filter's user only), so two hits on
the same address can be recognised as one without the address being
recoverable from the store, an export or a backup of the database alone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "incident-hash.key"
KEY_BYTES = 32
PREFIX = "hmac-sha256:"


def load_or_create_key(data_dir: Path) -> bytes:
    """The install's key, created (mode 0600) on first use; a short or empty file is an error."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link, not rename: if another process made the key first, keep theirs.
            os.link(tmp, path)
        except FileExistsError:
            key = path.read_bytes()
        finally:
            tmp.unlink(missing_ok=True)
    if len(key) < KEY_BYTES:
        raise ValueError(f"{path}: the incident hash key is damaged ({len(key)} bytes)")
    return key


def url_hash(key: bytes, canonical_url: str) -> str:
    """``hmac-sha256:HEX`` of a canonical URL (host + path, as the lists match it)."""
    digest = hmac.new(key, canonical_url.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest
