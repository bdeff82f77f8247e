"""The access log records where the proxy connected, beside the Host the client named."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import PUPIL, Gateway, Origin


def last_line_for(gw: Gateway, path: str) -> dict[str, Any]:
    return gw.access_line(lambda entry: entry.get("path") == path)


def test_a_forged_host_header_is_logged_with_the_real_address(
    gateway: Gateway, origin: Origin
) -> None:
    """``Host: www.bbc.co.uk`` sent to another address shows both the name and the address."""
    url = f"http://127.0.0.1:{origin.http_port}/forged-host"
    status, body = gateway.get(url, client=PUPIL, headers={"Host": "www.bbc.co.uk"})
    assert status == 200
    assert "origin ok www.bbc.co.uk /forged-host" in body  # the origin got the forged Host
    line = last_line_for(gateway, "/forged-host")
    assert line["host"] == "www.bbc.co.uk"
    assert line["server_addr"] == f"127.0.0.1:{origin.http_port}"


def test_an_https_request_logs_the_address_connected_to(gateway: Gateway, origin: Origin) -> None:
    """Inside a tunnel, the address is the one the proxy opened, not the name asked for."""
    status, _ = gateway.get(f"https://localhost:{origin.https_port}/tunnelled", client=PUPIL)
    assert status == 200
    line = last_line_for(gateway, "/tunnelled")
    assert line["host"] == "localhost"
    assert line["server_addr"] == f"127.0.0.1:{origin.https_port}"


def test_a_blocked_request_logs_where_it_would_have_gone(gateway: Gateway) -> None:
    """A block opens no connection; the line names the address it was asked to reach."""
    assert gateway.get("http://adult-demo.example/would-go", client=PUPIL)[0] == 403
    line = last_line_for(gateway, "/would-go")
    assert line["server_addr"] == "adult-demo.example:80"


def test_an_illegal_hit_withholds_the_address_too(gateway: Gateway) -> None:
    """The illegal line withholds the address like the host and path."""
    assert gateway.get("http://illegal-demo.example/x", client=PUPIL)[0] == 403
    line = gateway.access_line(lambda entry: entry.get("incident") == "illegal")
    assert line["server_addr"] == "(withheld)"
