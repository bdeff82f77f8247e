"""Illegal lists through the real proxy: a hot-reloaded edit that opens one is refused.

The proxy keeps its last good policy (the IWF demo hosts stay blocked, and so does
everything else the refused edit would have changed), the local origin receives
nothing for them, and the refusal is in the change log for the governor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from proxy.store.engine import make_engine, session
from proxy.store.models import Change
from tests.integration.harness import (
    PUPIL,
    Gateway,
    Origin,
    OriginCA,
    eventually,
    run_cli,
    start_gateway,
    stop_gateway,
)

pytestmark = pytest.mark.integration
REFRESH = ("--set", "schoolgate_controls_refresh_ms=200")


def sg(config_dir: Path, *args: str) -> str:
    return run_cli(config_dir, *args)


@pytest.fixture
def gw(tmp_path: Path, origin_ca: OriginCA) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path, origin_ca, *REFRESH)
    yield gateway
    stop_gateway(gateway)


def asked(gw: Gateway, origin: Origin, host: str, path: str) -> int:
    """GET through the proxy from a pupil, to the local origin, naming ``host``."""
    url = f"http://127.0.0.1:{origin.http_port}{path}"
    return gw.get(url, client=PUPIL, headers={"Host": host})[0]


def test_hot_reloaded_edit_opening_child_abuse_keeps_the_last_good_policy(
    gw: Gateway, origin: Origin
) -> None:
    """Relabelled and opened for pupils, child_abuse stays blocked; the refusal is logged."""
    eventually(lambda: "policy.baseline" in sg(gw.config_dir, "changes", "list"), "the baseline")
    targets = [
        ("iwf-test.example", "/abuse/test-image.jpg"),
        ("illegal-demo.example", "/"),
        ("casino-demo.example", "/roulette"),  # the same edit opens gambling, refused with it
    ]
    for host, path in targets:
        assert asked(gw, origin, host, path) == 403

    policy = gw.config_dir / "policy.yaml"
    text = policy.read_text("utf-8")
    edited = text.replace(
        "child_abuse: {lists: [iwf], illegal: true}", "child_abuse: {lists: [iwf], illegal: false}"
    ).replace(
        "      gambling: unacceptable\n      games:",
        "      gambling: acceptable\n      child_abuse: acceptable\n      games:",
    )
    assert edited.count("acceptable\n      child_abuse: acceptable") == 1
    policy.write_text(edited, "utf-8")
    eventually(lambda: "policy not reloaded" in gw.stderr(), "the refused reload")
    assert f"{policy}:" in gw.stderr()

    for host, path in targets:
        assert asked(gw, origin, host, path) == 403
    reached = [hit for hit in origin.hits if hit.startswith(tuple(h for h, _ in targets))]
    assert reached == []

    def refused() -> list[str]:
        engine = make_engine(f"sqlite:///{gw.data_dir / 'schoolgate.db'}")
        try:
            with session(engine, read_only=True) as s:
                return list(s.scalars(select(Change.subject).where(Change.kind == "policy.refuse")))
        finally:
            engine.dispose()

    eventually(lambda: bool(refused()), "the refusal in the change log")
    assert refused() == [
        f"policy {policy}: refused by policy reload, it would weaken the illegal lists; "
        "the policy in force stays"
    ]
    # `changes list` reads the policy on disk too: put the good one back to list the log.
    policy.write_text(text, "utf-8")
    listed = sg(gw.config_dir, "changes", "list", "--kind", "policy")
    assert "policy.refuse  (unattributed)  policy " in listed
    assert "iwf-test" not in listed
    assert "illegal-demo" not in listed
    assert sg(gw.config_dir, "changes", "verify").startswith("verified: ")
    assert "policy.unattributed" not in listed  # nothing of the refused edit was put in force
