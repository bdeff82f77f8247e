"""Review requests from the block page: the signed form token, the record, the reply page.

The block page's form carries a token the proxy signs as it makes the page
(HMAC-SHA256 with a key kept in ``DATA_DIR/review.key``, shared by every
worker): the block's reference, URL, category, client address, user and
time. The post is checked against it, so the record holds what the proxy
itself saw, never what a form claims, a form is filed only by the user and
device it was shown to, and any worker can answer a form another worker
served. Each
request is one JSON line appended to ``DATA_DIR/review-requests.jsonl``
with ``time, user, group, client_ip, url, category, reason, reference``;
the change-control store ingests that file as override requests. Illegal
blocks get no form and no token, so they can never be filed.

Each token files at most once: ``claim`` marks it used with a file created
exclusively in ``DATA_DIR/review-used/`` (so across workers and restarts;
markers are pruned once their tokens have expired). ``RateLimit`` caps how
many requests one client address may file (``REVIEWS_PER_HOUR``), since each
becomes a pending override and a permanent change-control row.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import html
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

REVIEW_FILE = "review-requests.jsonl"
KEY_FILE = "review.key"
MAX_REASON = 1000
MAX_AGE_SECONDS = 7 * 24 * 3600
USED_DIR = "review-used"
REVIEWS_PER_HOUR = 10  # per client address: a pupil asks for a few, not hundreds


@dataclass(frozen=True, slots=True)
class Blocked:
    """What the proxy blocked under one reference."""

    url: str | None
    category: str | None
    client_ip: str | None
    # The named user it was shown to (None for an address or network identity): on a
    # shared address (a proxy login, a terminal server) another user cannot file it.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    time: str
    user: str | None
    group: str
    client_ip: str | None
    url: str | None
    category: str | None
    reason: str
    reference: str

    def json_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=False) + "\n"


def load_key(data_dir: Path) -> bytes:
    """The install's signing key, created once (atomically, so workers agree on it)."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.tmp")
            tmp.write_text(secrets.token_hex(32), encoding="ascii")
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # fails if another worker got there first
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            continue
        if len(text) == 64:
            return bytes.fromhex(text)
        time.sleep(0.01)
    raise OSError(f"{path}: not a review key (64 hex digits)")


_KEYS: dict[Path, bytes] = {}


def signing_key(data_dir: Path) -> bytes:
    """``load_key`` once per process: the block page signs with it on the request path."""
    key = _KEYS.get(data_dir)
    if key is None:
        key = _KEYS[data_dir] = load_key(data_dir)
    return key


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def sign(key: bytes, reference: str, blocked: Blocked, issued: int) -> str:
    """The form token for one block: its facts, readable, and a MAC over them."""
    facts = {
        "r": reference,
        "u": blocked.url,
        "c": blocked.category,
        "ip": blocked.client_ip,
        "n": blocked.user,
    }
    payload = base64.urlsafe_b64encode(
        json.dumps({**facts, "t": issued}, separators=(",", ":")).encode()
    ).decode("ascii")
    return f"{payload}.{_mac(key, payload)}"


def verify(key: bytes, token: str, now: int) -> tuple[str, Blocked] | None:
    """The reference and block a token vouches for, or None if forged, damaged or stale."""
    payload, _, mac = token.partition(".")
    if not payload or not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    try:
        facts = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not isinstance(facts, dict) or not 0 <= now - int(facts.get("t", -1)) <= MAX_AGE_SECONDS:
        return None
    blocked = Blocked(facts.get("u"), facts.get("c"), facts.get("ip"), facts.get("n"))
    return str(facts.get("r")), blocked


def _mark(data_dir: Path, token: str) -> Path:
    return data_dir / USED_DIR / hashlib.sha256(token.encode("utf-8")).hexdigest()[:40]


def claim(data_dir: Path, token: str) -> bool:
    """Mark ``token`` used; False if it was already (by any worker, before any restart)."""
    mark = _mark(data_dir, token)
    mark.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def unclaim(data_dir: Path, token: str) -> None:
    """Give a claimed token back (its request could not be written)."""
    _mark(data_dir, token).unlink(missing_ok=True)


def prune_claims(data_dir: Path, now: float) -> int:
    """Forget the marks of tokens that have expired anyway; how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(data_dir / USED_DIR))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if now - entry.stat().st_mtime > MAX_AGE_SECONDS + 3600:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


class RateLimit:
    """At most ``count`` takes per key in any ``seconds`` (a sliding window, in memory)."""

    def __init__(self, count: int = REVIEWS_PER_HOUR, seconds: float = 3600.0) -> None:
        self.count = count
        self.seconds = seconds
        self._taken: dict[str, collections.deque[float]] = {}

    def take(self, key: str, now: float) -> bool:
        """Take one for ``key`` now, if its window has room."""
        window = self._taken.setdefault(key, collections.deque())
        while window and now - window[0] >= self.seconds:
            window.popleft()
        if len(window) >= self.count:
            return False
        window.append(now)
        if len(self._taken) > 100_000:  # forget idle keys now and then
            for idle in [k for k, w in self._taken.items() if not w or now - w[-1] >= self.seconds]:
                del self._taken[idle]
        return True

    def give_back(self, key: str) -> None:
        """Undo the last take for ``key`` (it filed nothing)."""
        window = self._taken.get(key)
        if window:
            window.pop()


def clean_reason(text: str) -> str:
    """The user's reason on one line, without control characters, at most ``MAX_REASON``."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat[:MAX_REASON]


def append(path: Path, request: ReviewRequest) -> None:
    """Append one line with a single write, so concurrent writers never interleave lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = request.json_line().encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body {{ font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }}
main {{ max-width: 40rem; margin: 4rem auto; background: #fff; padding: 2rem 2.5rem;
border-radius: .5rem; border-top: .4rem solid #2e6b3a; }}
.ref {{ font-family: monospace; background: #eef1f4; padding: .2rem .5rem; }}</style>
</head><body><main><h1>{title}</h1>{body}<footer>{school} &middot; web filter</footer>
</main></body></html>
"""


Outcome = Literal["filed", "expired", "used", "too_many"]


def reply_page(*, school: str, reference: str, filed: bool, why: Outcome | None = None) -> str:
    """What the user sees after posting the form: what happens next, or why nothing did."""
    why = why or ("filed" if filed else "expired")
    if why == "filed":
        title = "Your request has been sent"
        body = (
            "<p>The school's IT office will look at this page and the reason you gave. "
            "If it is needed for your work, a teacher can ask for it to be unblocked for a "
            "period of study; the headteacher approves such requests. Until then the page "
            "stays blocked.</p>"
            f'<p>Your reference is <span class="ref" id="reference">{html.escape(reference)}'
            "</span>. Quote it if you ask about this request.</p>"
        )
    elif why == "used":
        title = "This request was already sent"
        body = (
            "<p>This form has been sent once already; sending it again adds nothing. "
            "The school's IT office has your request.</p>"
        )
    elif why == "too_many":
        title = "Too many requests from this device"
        body = (
            "<p>This device has sent many review requests in the last hour. "
            "Try again later, or ask your teacher.</p>"
        )
    else:
        title = "This request could not be sent"
        body = (
            "<p>The form has expired, or was not sent by the person and device it was shown to. "
            "Go back, reload the blocked page and send the form again, or ask your teacher.</p>"
        )
    return _PAGE.format(title=html.escape(title), body=body, school=html.escape(school))
