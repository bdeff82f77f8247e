"""Review requests under abuse, through the real proxy: replayed tokens and bursts.

Each filed review request becomes a pending override and a permanent
change-control row, so a token must file once, and one device must not be
able to file hundreds.
"""

from __future__ import annotations

import http.client
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from proxy.review import REVIEWS_PER_HOUR
from tests.integration.harness import Gateway


def post(gw: Gateway, client: str, form: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10, source_address=(client, 0))
    try:
        conn.request(
            "POST",
            "http://adult-demo.example/_schoolgate/review",
            body=urllib.parse.urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def blocked_form(gw: Gateway, client: str) -> dict[str, str]:
    """Open a blocked page and fill in its review form (reference and signed token)."""
    status, body = gw.get("http://adult-demo.example/page", client=client)
    assert status == 403
    reference = body.split('id="reference">', 1)[1].split("<", 1)[0]
    token = body.split('name="token" value="', 1)[1].split('"', 1)[0]
    return {"reference": reference, "token": token, "reason": "for a lesson"}


def filed(gw: Gateway) -> list[str]:
    path = gw.data_dir / "review-requests.jsonl"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_a_replayed_token_is_refused(gateway: Gateway) -> None:
    """The same form sent 25 times files one request; every replay gets 409."""
    client = "127.0.0.31"
    form = blocked_form(gateway, client)
    before = len(filed(gateway))
    statuses = [post(gateway, client, form) for _ in range(25)]
    assert statuses == [200] + [409] * 24
    assert len(filed(gateway)) == before + 1


def test_replays_sent_at_once_file_once(gateway: Gateway) -> None:
    """The same token posted 20 times in parallel still files exactly once."""
    client = "127.0.0.33"
    form = blocked_form(gateway, client)
    before = len(filed(gateway))
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: post(gateway, client, form), range(20)))
    assert statuses.count(200) == 1
    # the rest: 409 (used), or 429 while parallel posts hold the device's hourly allowance
    assert set(statuses) - {200} <= {409, 429}
    assert len(filed(gateway)) == before + 1


def test_a_burst_of_requests_is_rate_limited(gateway: Gateway) -> None:
    """A device filing many distinct forms at once gets 429 after the hourly allowance."""
    client = "127.0.0.32"
    forms = [blocked_form(gateway, client) for _ in range(REVIEWS_PER_HOUR + 15)]
    before = len(filed(gateway))
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda form: post(gateway, client, form), forms))
    assert statuses.count(200) == REVIEWS_PER_HOUR
    assert statuses.count(429) == 15
    assert len(filed(gateway)) == before + REVIEWS_PER_HOUR
    assert post(gateway, "127.0.0.34", blocked_form(gateway, "127.0.0.34")) == 200  # others may
