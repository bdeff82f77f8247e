"""A suspension holds across a store outage, through the real proxy process.

A pupil is suspended while the store is up; the proxy is stopped; the store
becomes unreachable (``database:`` pointing at a port nobody listens on); the
proxy starts again. It decides with the last snapshot it kept on disk, so the
suspended pupil is still blocked and the origin receives nothing from them,
while everyone else is served as usual.
"""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import cli
from proxy.store import snapshot
from tests.console_accounts import ensure_account, proof
from tests.integration.harness import (
    PUPIL,
    TEST_POLICY,
    Origin,
    OriginCA,
    eventually,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

pytestmark = pytest.mark.integration
REFRESH = ("--set", "schoolgate_controls_refresh_ms=200")
NAMED_PUPIL = "127.0.0.6"  # a.pupil's fixed address


def test_suspended_pupil_stays_blocked_when_the_proxy_starts_with_the_store_down(
    tmp_path: Path, origin_ca: OriginCA, origin: Origin
) -> None:
    """Suspend, stop, take the store away, start: the pupil is still blocked, nothing leaks."""
    policy = TEST_POLICY.replace(
        "  users:\n",
        f"  users:\n    - {{name: a.pupil, group: pupil, ips: [{NAMED_PUPIL}]}}\n",
    )
    config_dir = tmp_path / "config"
    write_config(config_dir, tmp_path / "var", free_port(), policy)
    url = f"http://localhost:{origin.http_port}/homework"

    gw = start_gateway(tmp_path, origin_ca, *REFRESH)
    try:
        assert gw.get(url, client=NAMED_PUPIL)[0] == 200
        suspend = ["access", "suspend", "a.pupil", "--reason", "misuse", "--by", "dsl"]
        ensure_account(config_dir, "dsl", "dsl")
        result = CliRunner().invoke(
            cli, [*suspend, "--config", str(config_dir)], input=proof(config_dir, "dsl")
        )
        assert result.exit_code == 0, result.stderr
        eventually(lambda: gw.get(url, client=NAMED_PUPIL)[0] == 403, "the suspension")
    finally:
        stop_gateway(gw)
    kept = gw.data_dir / snapshot.SNAPSHOT_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    with (config_dir / "schoolgate.yaml").open("a", encoding="utf-8") as f:
        f.write(f"database: postgresql+psycopg://schoolgate@127.0.0.1:{free_port()}/schoolgate\n")
    gw = start_gateway(tmp_path, origin_ca, *REFRESH)
    try:
        eventually(lambda: "overrides not refreshed" in gw.stderr(), "the store to be missed")
        path = f"/after-restart-{uuid.uuid4().hex}"
        status, _ = gw.get(f"http://localhost:{origin.http_port}{path}", client=NAMED_PUPIL)
        assert status == 403
        assert not [hit for hit in origin.hits if hit.endswith(path)]
        # The access log is written off-thread: wait for this request's own line.
        deadline = time.monotonic() + 10
        mine: list[dict[str, object]] = []
        while not mine and time.monotonic() < deadline:
            mine = [
                entry for entry in map(json.loads, gw.access_lines(1)) if entry.get("path") == path
            ]
            time.sleep(0.05)
        assert mine, f"no access-log line for {path}"
        line = mine[-1]
        assert (line["user"], line["action"], line["status"]) == ("a.pupil", "suspended", 403)
        # The proxy is serving: a pupil who is not suspended gets through.
        assert gw.get(f"http://localhost:{origin.http_port}/open", client=PUPIL)[0] == 200
        assert gw.process.poll() is None
    finally:
        stop_gateway(gw)
