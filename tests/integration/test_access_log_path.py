"""``access_log:`` in schoolgate.yaml: the real proxy writes there, and the timeline reads there.

The console, ``purge`` and the termly report find the log through the same setting
(``Settings.access_log_path``); the unit tests cover those. Here the real ``schoolgate
run`` proves the writing end: a blocked request lands in the custom file, nothing in
the data folder, and the DSL's timeline finds it beside a line in the rotated copy.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.incidents import timeline
from proxy.settings import load_settings
from tests.integration.harness import (
    PUPIL,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)


def test_the_proxy_writes_where_the_settings_say_and_the_timeline_reads_it(
    tmp_path: Path, origin_ca: OriginCA
) -> None:
    config_dir, data_dir = tmp_path / "config", tmp_path / "var"
    write_config(config_dir, data_dir, free_port())  # run --listen gives the port it uses
    settings_file = config_dir / "schoolgate.yaml"
    settings_file.write_text(settings_file.read_text() + "access_log: ../logs/school.log\n")
    custom = tmp_path / "logs" / "school.log"
    custom.parent.mkdir()
    earlier = datetime.now(UTC) - timedelta(minutes=20)
    (tmp_path / "logs" / "school.log.1").write_text(
        json.dumps(
            {
                "time": earlier.isoformat().replace("+00:00", "Z"),
                "user": None,
                "client_ip": PUPIL,
                "method": "GET",
                "host": "rotated.example",
                "path": "/homework",
                "decision": "allow",
                "ctype": "text/html",
            }
        )
        + "\n"
    )
    gw = start_gateway(tmp_path, origin_ca)
    try:
        status, _ = gw.get("http://bad.example/page", client=PUPIL)
        assert status == 403
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "bad.example" not in _text(custom):
            time.sleep(0.05)
    finally:
        stop_gateway(gw)
    assert "bad.example" in _text(custom)
    assert not (data_dir / "access.log").exists()
    path = load_settings(config_dir).access_log_path
    assert path == custom.resolve()
    now = datetime.now(UTC)
    found = list(timeline.activity(path, f"ip:{PUPIL}", now - timedelta(hours=1), now))
    assert [(x.host, x.blocked) for x in found] == [
        ("rotated.example", False),
        ("bad.example", True),
    ]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""
