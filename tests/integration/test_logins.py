"""Proxy logins with the real proxy: 407 for wrong credentials, logins that change the group."""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.logins import hash_password
from proxy.review import Blocked, load_key, verify
from tests.integration.harness import (
    PUPIL,
    STAFF,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

TRUSTED = "127.0.0.5"  # a stand-in for an SSO gateway in front of the filter


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def gateway_with_auth(tmp: Path, origin_ca: OriginCA, auth_yaml: str) -> Gateway:
    config, data = tmp / "config", tmp / "var"
    write_config(config, data, free_port())
    users = tmp / "users"
    users.write_text(
        f"head.teacher:{hash_password('head pass', rounds=4)}\n"
        f"sam:{hash_password('sam pass', rounds=4)}\n"
    )
    with (config / "schoolgate.yaml").open("a") as f:
        f.write(auth_yaml.format(users=users))
    return start_gateway(tmp, origin_ca)


@pytest.fixture(scope="module")
def required(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Gateway]:
    gw = gateway_with_auth(
        tmp_path_factory.mktemp("required"),
        origin_ca,
        "auth: {{users_file: {users}, required: true}}\n",
    )
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="module")
def optional(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Gateway]:
    gw = gateway_with_auth(
        tmp_path_factory.mktemp("optional"),
        origin_ca,
        "auth:\n"
        "  users_file: {users}\n"
        "  login_host: login.schoolgate\n"
        f"  header: {{{{header: X-Authenticated-User, trusted: [{TRUSTED}/32]}}}}\n",
    )
    yield gw
    stop_gateway(gw)


def social(origin: Origin) -> tuple[str, dict[str, str]]:
    return f"http://127.0.0.1:{origin.http_port}/feed", {"Host": "social-demo.example"}


def test_no_credentials_get_407_when_login_is_required(required: Gateway, origin: Origin) -> None:
    """Without a login the proxy answers 407 with a Basic challenge, and nothing goes upstream."""
    hits = len(origin.hits)
    conn = http.client.HTTPConnection("127.0.0.1", required.port, timeout=10)
    conn.request("GET", f"http://localhost:{origin.http_port}/x")
    response = conn.getresponse()
    assert response.status == 407
    assert response.getheader("Proxy-Authenticate", "").startswith("Basic realm=")
    assert len(origin.hits) == hits


@pytest.mark.parametrize(
    "credentials",
    [basic("head.teacher", "wrong"), basic("nobody", "head pass"), basic("sam", ""), "Basic !!"],
)
def test_wrong_credentials_get_407(required: Gateway, origin: Origin, credentials: str) -> None:
    """Wrong passwords, unknown users and garbage are refused with 407, never passed."""
    url = f"http://localhost:{origin.http_port}/x"
    status, _ = required.get(url, client=PUPIL, headers={"Proxy-Authorization": credentials})
    assert status == 407


def test_a_login_gives_the_users_group(required: Gateway, origin: Origin) -> None:
    """The headteacher logging in on a pupil's machine gets the head's rules."""
    url, headers = social(origin)
    head = {**headers, "Proxy-Authorization": basic("head.teacher", "head pass")}
    status, body = required.get(url, client=PUPIL, headers=head)
    assert (status, "social-demo.example" in body) == (200, True)


def test_a_login_not_in_the_policy_keeps_the_address_group(
    required: Gateway, origin: Origin
) -> None:
    """A user the policy does not name is filtered as their address's group."""
    url, headers = social(origin)
    sam = {**headers, "Proxy-Authorization": basic("sam", "sam pass")}
    assert required.get(url, client=PUPIL, headers=sam)[0] == 403


def test_an_edited_users_file_is_read_while_the_proxy_runs(
    required: Gateway, origin: Origin
) -> None:
    """A user added to the users file can log in within seconds, with no restart; a broken
    edit keeps the last good file (its users still log in); the fixed file is read again."""
    users = required.config_dir.parent / "users"
    original = users.read_text()
    url, headers = social(origin)
    newbie = {**headers, "Proxy-Authorization": basic("newbie", "new pass")}
    sam = {**headers, "Proxy-Authorization": basic("sam", "sam pass")}

    def status_once_not(old: int, who: dict[str, str]) -> int:
        deadline = time.monotonic() + 10
        status = required.get(url, client=PUPIL, headers=who)[0]
        while status == old and time.monotonic() < deadline:
            time.sleep(0.3)
            status = required.get(url, client=PUPIL, headers=who)[0]
        return status

    try:
        assert required.get(url, client=PUPIL, headers=newbie)[0] == 407
        users.write_text(original + f"newbie:{hash_password('new pass', rounds=4)}\n")
        assert status_once_not(407, newbie) == 403  # logged in; the pupil address's rules
        users.write_text(original + "newbie has no hash\n")
        time.sleep(2.5)  # the proxy looks at the file at most once a second
        assert required.get(url, client=PUPIL, headers=sam)[0] == 403  # last good file
        assert required.get(url, client=PUPIL, headers=newbie)[0] == 403
        users.write_text(original)
        assert status_once_not(403, newbie) == 407  # read again: newbie is gone
        assert "users file not reloaded" in required.stderr()
    finally:
        users.write_text(original)


def tunnel_get(gw: Gateway, origin: Origin, credentials: str) -> int:
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gw.port, timeout=10, context=context, source_address=(PUPIL, 0)
    )
    conn.set_tunnel("localhost", origin.https_port, headers={"Proxy-Authorization": credentials})
    try:
        conn.request("GET", "/secure")
        return conn.getresponse().status
    except OSError as exc:
        if "407" in str(exc):
            return 407
        raise
    finally:
        conn.close()


def test_https_tunnels_need_the_login_too(required: Gateway, origin: Origin) -> None:
    """CONNECT with a right login opens the tunnel; with a wrong one it gets 407."""
    assert tunnel_get(required, origin, basic("sam", "sam pass")) == 200
    assert tunnel_get(required, origin, basic("sam", "nope")) == 407


def test_login_is_optional_unless_required(optional: Gateway, origin: Origin) -> None:
    """Without `required`, a client with no login is filtered by address; a wrong one gets 407."""
    url, headers = social(origin)
    assert optional.get(url, client=PUPIL, headers=headers)[0] == 403
    bad = {**headers, "Proxy-Authorization": basic("head.teacher", "guess")}
    assert optional.get(url, client=PUPIL, headers=bad)[0] == 407


def test_the_login_page_binds_an_address_until_logout(optional: Gateway, origin: Origin) -> None:
    """Signing in at the login page makes later requests from that address the user's."""
    url, headers = social(origin)
    page = "http://login.schoolgate/"
    assert optional.get(url, client=STAFF, headers=headers)[0] == 403
    status, _ = optional.get(page, client=STAFF, headers={"Authorization": basic("x", "y")})
    assert status == 401
    assert optional.get(url, client=STAFF, headers=headers)[0] == 403
    signed = optional.get(
        page, client=STAFF, headers={"Authorization": basic("head.teacher", "head pass")}
    )
    assert signed[0] == 200
    assert "signed in as head.teacher" in signed[1]
    assert optional.get(url, client=STAFF, headers=headers)[0] == 200
    assert optional.get(url, client=PUPIL, headers=headers)[0] == 403  # only that address
    assert post_logout(optional, STAFF, csrf_of(signed[1]))[0] == 200
    assert optional.get(url, client=STAFF, headers=headers)[0] == 403


def test_a_header_names_the_user_only_from_a_trusted_address(
    optional: Gateway, origin: Origin
) -> None:
    """The identity header is believed from the trusted upstream and ignored from a pupil."""
    url, headers = social(origin)
    named = {**headers, "X-Authenticated-User": "head.teacher"}
    assert optional.get(url, client=TRUSTED, headers=named)[0] == 200
    assert optional.get(url, client=PUPIL, headers=named)[0] == 403


def test_a_missing_users_file_stops_the_start(tmp_path: Path, origin_ca: OriginCA) -> None:
    """If the users file cannot be read, `run` refuses to start and says why."""
    config = tmp_path / "config"
    write_config(config, tmp_path / "var", free_port())
    with (config / "schoolgate.yaml").open("a") as f:
        f.write(f"auth: {{users_file: {tmp_path / 'absent'}, required: true}}\n")
    with pytest.raises(AssertionError, match="cannot read users file"):
        start_gateway(tmp_path, origin_ca)


# -- guessing, signing out, by an attacker -------------------------------------------------


def csrf_of(page: str) -> str:
    found = re.search(r"name='csrf' value='(\w+)'", page)
    assert found is not None, page
    return found.group(1)


def post_logout(gw: Gateway, client: str, csrf: str | None) -> tuple[int, str]:
    """POST the sign-out form to the login page through the proxy (``csrf`` None: no token)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10, source_address=(client, 0))
    body = "" if csrf is None else f"csrf={csrf}"
    try:
        conn.request(
            "POST",
            "http://login.schoolgate/logout",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def throttled(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA
) -> Iterator[tuple[Gateway, int]]:
    """Logins that allow 3 wrong tries, then back off, and lock out at the 5th for a minute."""
    tmp = tmp_path_factory.mktemp("throttled")
    config, data = tmp / "config", tmp / "var"
    write_config(config, data, free_port())
    users = tmp / "users"
    users.write_text(
        f"head.teacher:{hash_password('head pass', rounds=4)}\n"
        f"sam:{hash_password('sam pass', rounds=4)}\n"
        f"kim:{hash_password('kim pass', rounds=4)}\n"
        f"lee:{hash_password('lee pass', rounds=4)}\n"
    )
    with (config / "schoolgate.yaml").open("a") as f:
        f.write(
            f"auth: {{users_file: {users}, free_failures: 3, lockout_after: 5, "
            "lockout_minutes: 1}\n"
        )
    metrics = free_port()
    gw = start_gateway(tmp, origin_ca, "--set", f"schoolgate_metrics_listen=127.0.0.1:{metrics}")
    yield gw, metrics
    stop_gateway(gw)


def proxy_try(gw: Gateway, origin: Origin, client: str, user: str, password: str) -> int:
    url = f"http://localhost:{origin.http_port}/guarded"
    headers = {"Proxy-Authorization": basic(user, password)}
    return gw.get(url, client=client, headers=headers)[0]


def lockout_metric(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^schoolgate_login_lockouts_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_guessing_then_the_right_password_is_refused_during_lockout(
    throttled: tuple[Gateway, int], origin: Origin
) -> None:
    """Wrong guesses back off, then lock the user out: the right password is refused too,
    nothing reaches the origin, and the lockout is logged and counted."""
    gw, metrics = throttled
    client = "127.0.0.21"
    statuses = [proxy_try(gw, origin, client, "head.teacher", f"guess{i}") for i in range(5)]
    assert statuses == [407, 407, 407, 429, 429]  # the 4th and 5th come too soon
    time.sleep(1.1)
    assert proxy_try(gw, origin, client, "head.teacher", "guess4") == 407
    time.sleep(2.1)
    assert proxy_try(gw, origin, client, "head.teacher", "guess5") == 407  # the 5th: locked
    hits = len(origin.hits)
    assert proxy_try(gw, origin, client, "head.teacher", "head pass") == 429
    assert proxy_try(gw, origin, "127.0.0.22", "head.teacher", "head pass") == 429  # any address
    assert proxy_try(gw, origin, client, "sam", "sam pass") == 429  # the address is locked too
    assert len(origin.hits) == hits
    assert "login locked out for 1 minutes" in gw.stderr()
    deadline = time.monotonic() + 8
    while lockout_metric(metrics) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lockout_metric(metrics) == 2  # the user and the address


def test_a_burst_of_parallel_guesses_is_throttled(
    throttled: tuple[Gateway, int], origin: Origin
) -> None:
    """Twenty guesses at once are not twenty checks: all but the free tries get 429."""
    gw, _ = throttled
    with ThreadPoolExecutor(10) as pool:
        statuses = list(
            pool.map(lambda i: proxy_try(gw, origin, "127.0.0.23", "sam", f"g{i}"), range(20))
        )
    assert statuses.count(407) <= 3
    assert statuses.count(429) >= 17


def test_the_login_page_is_throttled_too(throttled: tuple[Gateway, int]) -> None:
    """Guessing at the login page backs off the same way (429 after the free tries)."""
    gw, _ = throttled
    page = "http://login.schoolgate/"
    statuses = [
        gw.get(page, client="127.0.0.24", headers={"Authorization": basic("kim", f"x{i}")})[0]
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_logout_needs_a_post_with_the_pages_token(
    throttled: tuple[Gateway, int], origin: Origin
) -> None:
    """A GET of /logout (an image on any page) or a POST without the token signs nobody out."""
    gw, _ = throttled
    client, page = "127.0.0.25", "http://login.schoolgate/"
    status, body = gw.get(page, client=client, headers={"Authorization": basic("lee", "lee pass")})
    assert status == 200
    token = csrf_of(body)
    bindings = gw.data_dir / "logins.json"

    def bound() -> bool:
        return client in json.loads(bindings.read_text())

    assert bound()
    assert gw.get(page + "logout", client=client)[0] == 200  # shows the sign-out button
    assert bound()
    assert post_logout(gw, client, None)[0] == 403
    assert post_logout(gw, client, "0" * 32)[0] == 403
    assert post_logout(gw, "127.0.0.26", token)[0] == 200  # another address: not signed in
    assert bound()
    assert post_logout(gw, client, token)[0] == 200
    assert not bound()


def test_a_review_form_is_filed_only_by_the_user_it_was_shown_to(optional: Gateway) -> None:
    """On one shared address, the block page's form is signed for its URL, address and user;
    another user (or no user) posting it files nothing, the user it was shown to files it."""
    url = "http://adult-demo.example/review-me"
    status, page = optional.get(url, client=TRUSTED, headers={"X-Authenticated-User": "sam"})
    assert status == 403
    reference = page.split('id="reference">', 1)[1].split("<", 1)[0]
    token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
    key = load_key(optional.data_dir)
    assert verify(key, token, int(time.time())) == (
        reference,
        Blocked("adult-demo.example/review-me", "adult", TRUSTED, "sam"),
    )
    form = urllib.parse.urlencode({"reference": reference, "token": token, "reason": "Art"})
    path = optional.data_dir / "review-requests.jsonl"

    def post(headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection(
            "127.0.0.1", optional.port, timeout=10, source_address=(TRUSTED, 0)
        )
        try:
            conn.request(
                "POST",
                "http://adult-demo.example/_schoolgate/review",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
            )
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    assert post({"X-Authenticated-User": "head.teacher"}) == 404
    assert post({}) == 404
    assert not path.exists()
    assert post({"X-Authenticated-User": "sam"}) == 200
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert (record["user"], record["url"], record["reference"]) == (
        "sam",
        "adult-demo.example/review-me",
        reference,
    )
