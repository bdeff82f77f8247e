"""Proxy logins with the real proxy: 407 for wrong credentials, logins that change the group."""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.logins import hash_password
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
    assert optional.get(page + "logout", client=STAFF)[0] == 200
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
