"""One trust, many schools, through real proxy processes on one real PostgreSQL.

Three ``schoolgate run`` gateways share a store: site ``north`` has one,
site ``south`` two (the HA pair, sharing the CA). Each runs the trust's
policy with its own overlay. The test attacks what the sharing must hold:

- a trust policy change reaches every gateway (hot reload);
- an override approved at one site (the CLI, against the shared database)
  applies at the other within 5 s, although the gateways poll the store only
  once a minute here: only the NOTIFY can be that quick;
- incidents from all three land in one store, each naming its site;
- SIGKILLing one gateway of the pair loses no incident: every 403 a pupil saw
  at either gateway of the pair is in the store once the killed one has
  restarted (its spool replayed).
"""

from __future__ import annotations

import functools
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from proxy.cli import cli
from proxy.incidents.models import Incident
from proxy.store.engine import make_engine, session
from proxy.store.site import DEFAULT_SITE, set_site
from tests.console_accounts import acting, ensure_account, proof
from tests.integration.harness import (
    PUPIL,
    STAFF,
    TEST_POLICY,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.postgres import PostgresServer, postgres  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration
# The poll is a minute: an override seen within 5 s was carried by the NOTIFY.
SLOW_POLL = ("--set", "schoolgate_controls_refresh_ms=60000")
TRUST = TEST_POLICY + "overlay:\n  may_loosen: [games]\n"
TRUST_BLOCK = "trust-block.example"


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    """Wait for ``check``; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def site_config(tmp: Path, site: str, school: str, trust: Path, database: str) -> None:
    config, data = tmp / "config", tmp / "var"
    write_config(config, data, free_port(), f"school: {school}\n")
    with (config / "schoolgate.yaml").open("a", encoding="utf-8") as f:
        f.write(f"database: {database}\nsite: {site}\ntrust_policy: {trust}\n")


@pytest.fixture
def trust(
    tmp_path: Path,
    origin_ca: OriginCA,
    postgres: PostgresServer,  # noqa: F811
) -> Iterator[tuple[Path, str, dict[str, Gateway]]]:
    database = postgres.create_database(f"trust_{time.monotonic_ns()}")
    trust_path = tmp_path / "trust.yaml"
    trust_path.write_text(TRUST, encoding="utf-8")
    for name, site, school in [
        ("north", "north", "North Academy"),
        ("south1", "south", "South School"),
        ("south2", "south", "South School"),
    ]:
        site_config(tmp_path / name, site, school, trust_path, database)
    gateways: dict[str, Gateway] = {}
    try:
        gateways["north"] = start_gateway(tmp_path / "north", origin_ca, *SLOW_POLL)
        gateways["south1"] = start_gateway(tmp_path / "south1", origin_ca, *SLOW_POLL)
        # The pair shares one CA, so clients trust either (README: High availability).
        shutil.copytree(
            gateways["south1"].data_dir / "mitmproxy", tmp_path / "south2/var/mitmproxy"
        )
        gateways["south2"] = start_gateway(tmp_path / "south2", origin_ca, *SLOW_POLL)
        yield trust_path, database, gateways
    finally:
        for gw in gateways.values():
            stop_gateway(gw)
        set_site(DEFAULT_SITE)  # the CLI, run in this process, set its site


ACCOUNTS = {"j.meer": "staff", "head.teacher": "approver"}


def sg(config_dir: Path, *args: str) -> str:
    """Run a command; whoever --by names answers its password and code prompts (main's CLI
    asks a person acting for their console account)."""
    names = acting(args)
    for name in names:
        ensure_account(config_dir, name, ACCOUNTS[name])
    result = CliRunner().invoke(
        cli, [*args, "--config", str(config_dir)], input=proof(config_dir, *names)
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def incidents_by_site(database: str) -> dict[str, int]:
    """The adult hits stored per site: the sum of the incidents' roll-up counts."""
    engine = make_engine(database)
    try:
        with session(engine, read_only=True) as s:
            rows = s.execute(
                select(Incident.site, func.sum(Incident.count))
                .where(Incident.category == "adult")
                .group_by(Incident.site)
            ).all()
    finally:
        engine.dispose()
    return {site: int(total) for site, total in rows}


def test_one_trust_three_gateways(
    trust: tuple[Path, str, dict[str, Gateway]], origin: Origin, origin_ca: OriginCA
) -> None:
    """Trust edits reach all, controls cross sites at once, incidents keep their site, none lost."""
    trust_path, database, gws = trust
    url = f"http://127.0.0.1:{origin.http_port}/page"

    def status(gw: Gateway, host: str, client: str = PUPIL) -> int:
        return gw.get(url, client=client, headers={"Host": host})[0]

    # A trust policy change reaches all three gateways (hot reload). Staff: social is
    # blocked without an incident, so only the adult hits below are incidents to count.
    assert all(status(gw, TRUST_BLOCK, STAFF) == 200 for gw in gws.values())
    trust_path.write_text(
        TRUST.replace(
            "    - {entry: bad.example, category: adult}\n",
            f"    - {{entry: bad.example, category: adult}}\n"
            f"    - {{entry: {TRUST_BLOCK}, category: social}}\n",
        ),
        encoding="utf-8",
    )
    for name, gw in gws.items():
        blocked = functools.partial(lambda g: status(g, TRUST_BLOCK, STAFF) == 403, gw)
        eventually(blocked, f"the trust change at {name}")

    # An override approved at north applies at south within 5 s (NOTIFY, not the poll).
    games = "games-demo.example"
    assert status(gws["south1"], games) == 403
    north = gws["north"].config_dir
    out = sg(
        north,
        *("override", "request", games, "--for", "group:pupil", "--days", "1"),
        *("--reason", "Computing: game design unit", "--by", "j.meer"),
    )
    override_id = out.split()[1].lstrip("#")
    sg(north, "override", "approve", override_id, "--by", "head.teacher")
    took = eventually(lambda: status(gws["south1"], games) == 200, "the override at south", 5.0)
    assert status(gws["south2"], games) == 200
    print(f"override approved at north applied at south in {took:.2f} s")

    # Incidents from every gateway, then one of the pair is SIGKILLed mid-traffic.
    seen = {"north": 0, "south": 0}

    def hit(name: str, n: int) -> None:
        for i in range(n):
            if gws[name].get(f"http://adult-demo.example/{name}/{i}", client=PUPIL)[0] == 403:
                seen["north" if name == "north" else "south"] += 1

    hit("north", 5)
    hit("south1", 10)
    hit("south2", 5)
    time.sleep(0.3)  # beyond the writer's crash window (README: one fsync, held to 100 ms)
    gws["south1"].process.send_signal(signal.SIGKILL)
    gws["south1"].process.wait(10)
    hit("south2", 10)  # the pair's other gateway carries on
    assert seen == {"north": 5, "south": 25}
    # The killed gateway restarts on its own disk and replays whatever its spool held.
    gws["south1"] = start_gateway(trust_path.parent / "south1", origin_ca, *SLOW_POLL)
    eventually(lambda: incidents_by_site(database) == seen, "every incident in the store", 30)
    # One queue for the trust; each school's CLI shows its own unless asked for all.
    everyone = sg(gws["north"].config_dir, "incidents", "list", "--status", "all", "--site", "all")
    assert "@north" in everyone
    assert "@south" in everyone
    south_only = sg(gws["south2"].config_dir, "incidents", "list", "--status", "all")
    assert "@south" in south_only
    assert "@north" not in south_only
