"""The real proxy serves Prometheus metrics on their own port, counting real traffic."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    HEAD,
    PUPIL,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
)


@pytest.fixture(scope="module")
def metered(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA
) -> Iterator[tuple[Gateway, int]]:
    port = free_port()
    gw = start_gateway(
        tmp_path_factory.mktemp("metered"),
        origin_ca,
        "--set",
        f"schoolgate_metrics_listen=127.0.0.1:{port}",
    )
    yield gw, port
    stop_gateway(gw)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_count_real_requests(metered: tuple[Gateway, int], origin: Origin) -> None:
    """After a block and a pass, the scrape shows them by group, decision and category."""
    gw, port = metered
    before = scrape(port)
    assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
    assert gw.get(f"http://localhost:{origin.http_port}/ok", client=HEAD)[0] == 200
    after = scrape(port)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('schoolgate_requests_total{decision="block",group="pupil"}') == 1
    assert delta('schoolgate_requests_total{decision="allow",group="head"}') == 1
    assert delta('schoolgate_blocks_total{category="adult"}') == 1
    assert delta('schoolgate_incidents_total{severity="unacceptable"}') == 1
    assert delta("schoolgate_lookup_seconds_count") == 2
    # The state gauges are set by the refresh task, which starts with the proxy's `running`.
    deadline = time.monotonic() + 10
    while 'schoolgate_index_entries{source="ut1"}' not in after and time.monotonic() < deadline:
        time.sleep(0.2)
        after = scrape(port)
    assert after['schoolgate_index_entries{source="ut1"}'] > 0
    assert 0 <= after["schoolgate_index_age_seconds"] < 3600
    # The store is up: the writer is up, and the incident just raised reached it (the gauges
    # are refreshed every few seconds). Its spool depth under an outage is checked by
    # tests/integration/test_store_faults.py.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = scrape(port)
        if after.get("schoolgate_store_writer_up") == 1 and after["schoolgate_spool_depth"] == 0:
            break
        time.sleep(0.5)
    assert after["schoolgate_store_writer_up"] == 1
    assert after["schoolgate_spool_depth"] == 0
    assert after["schoolgate_store_oldest_unapplied_seconds"] == 0
    assert after["schoolgate_store_spool_seconds_count"] >= 1


def test_a_rejected_reload_is_counted(metered: tuple[Gateway, int]) -> None:
    """A broken policy edit shows as a reload failure, and the proxy keeps filtering."""
    gw, port = metered
    before = scrape(port).get("schoolgate_policy_reload_failures_total", 0.0)
    policy = gw.config_dir / "policy.yaml"
    good = policy.read_text()
    policy.write_text(good + "\nnot: [valid\n")
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if scrape(port).get("schoolgate_policy_reload_failures_total", 0.0) > before:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("reload failure never counted")
    finally:
        policy.write_text(good)
    assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403


def test_metrics_name_no_host_or_address(metered: tuple[Gateway, int]) -> None:
    """Hosts and client addresses never appear in the exposition."""
    gw, port = metered
    gw.get("http://casino-demo.example/", client=PUPIL)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "casino-demo" not in text
    assert "127.0.0.2" not in text


def test_a_busy_metrics_port_stops_the_start(tmp_path: Path, origin_ca: OriginCA) -> None:
    """If the metrics port cannot be bound, `run` exits with a one-line reason."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AssertionError, match="metrics_listen"):
            start_gateway(
                tmp_path, origin_ca, "--set", f"schoolgate_metrics_listen=127.0.0.1:{port}"
            )
