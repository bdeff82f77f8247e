"""Review requests: the signed form token, the key file, the record and the user's reason."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from proxy.review import (
    MAX_AGE_SECONDS,
    USED_DIR,
    Blocked,
    RateLimit,
    ReviewRequest,
    append,
    claim,
    clean_reason,
    load_key,
    prune_claims,
    sign,
    unclaim,
    verify,
)

BLOCK = Blocked("adult.example/page", "adult", "10.10.0.9")


def test_a_token_vouches_for_what_was_signed(tmp_path: Path) -> None:
    """verify returns the signed reference and block, within the token's lifetime."""
    key = load_key(tmp_path)
    token = sign(key, "SG-0A1B2C3D", BLOCK, 1000)
    assert verify(key, token, 1000 + 60) == ("SG-0A1B2C3D", BLOCK)
    assert verify(key, token, 1000 + MAX_AGE_SECONDS + 1) is None


def test_a_changed_token_or_another_key_is_rejected(tmp_path: Path) -> None:
    """Any edit to the facts, the MAC or the key makes the token worthless."""
    key = load_key(tmp_path / "a")
    token = sign(key, "SG-0A1B2C3D", BLOCK, 1000)
    payload, mac = token.split(".")
    other = sign(key, "SG-FFFFFFFF", BLOCK, 1000).split(".")[0]
    for bad in (f"{other}.{mac}", f"{payload}.{'0' * 32}", "", "x.y", payload):
        assert verify(key, bad, 1001) is None
    assert verify(load_key(tmp_path / "b"), token, 1001) is None


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    """The first caller creates the key (mode 600); every later caller reads the same one."""
    first = load_key(tmp_path)
    assert load_key(tmp_path) == first
    assert len(first) == 32
    assert (tmp_path / "review.key").stat().st_mode & 0o777 == 0o600


def test_reasons_are_one_bounded_line() -> None:
    """Newlines and control characters become spaces; a reason is at most 1000 characters."""
    assert clean_reason("Biology\r\nlesson\x00 ") == "Biology lesson"
    assert len(clean_reason("a" * 5000)) == 1000


def test_each_request_is_one_json_line(tmp_path: Path) -> None:
    """Appending writes exactly the fields the change-control store ingests."""
    path = tmp_path / "review-requests.jsonl"
    request = ReviewRequest(
        "2026-11-23T11:00:00+00:00",
        None,
        "pupil",
        "10.10.0.9",
        BLOCK.url,
        BLOCK.category,
        "Art",
        "SG-0A1B2C3D",
    )
    append(path, request)
    append(path, request)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert set(json.loads(lines[0])) == {
        "time",
        "user",
        "group",
        "client_ip",
        "url",
        "category",
        "reason",
        "reference",
    }


def test_a_token_is_claimed_once(tmp_path: Path) -> None:
    """The first claim of a token wins, every later one fails; a given-back token claims again."""
    assert claim(tmp_path, "tok")
    assert not claim(tmp_path, "tok")
    assert claim(tmp_path, "other")
    unclaim(tmp_path, "tok")
    assert claim(tmp_path, "tok")
    assert (tmp_path / USED_DIR).stat().st_mode & 0o777 == 0o700


def test_claims_of_expired_tokens_are_pruned(tmp_path: Path) -> None:
    """Marks older than a token can live are removed; newer ones stay."""
    claim(tmp_path, "old")
    claim(tmp_path, "new")
    now = time.time()
    for mark in (tmp_path / USED_DIR).iterdir():
        if mark.name == hashlib.sha256(b"old").hexdigest()[:40]:
            os.utime(mark, (now - MAX_AGE_SECONDS - 7200,) * 2)
    assert prune_claims(tmp_path, now) == 1
    assert not claim(tmp_path, "new")
    assert claim(tmp_path, "old")


def test_the_rate_limit_is_a_sliding_window_per_key() -> None:
    """``count`` takes per key in any window; a given-back take frees its place."""
    limit = RateLimit(count=2, seconds=10)
    assert limit.take("a", 0)
    assert limit.take("a", 1)
    assert not limit.take("a", 2)
    assert limit.take("b", 2)
    limit.give_back("a")
    assert limit.take("a", 3)
    assert not limit.take("a", 9.9)
    assert limit.take("a", 10.0)
