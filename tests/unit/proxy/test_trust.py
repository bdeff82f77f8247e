"""A trust policy with school overlays: tighten freely, loosen only what the trust allows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from proxy.cli import cli
from proxy.store.engine import make_engine, session
from proxy.store.models import Change
from proxy.store.site import DEFAULT_SITE, set_site
from proxy.trust import layered_policy
from proxy.yamlfile import ConfigError
from tests.console_accounts import ensure_account, proof
from tests.unit.proxy.configs import write_config

TRUST = """\
school: Oak Trust
identity:
  default_group: pupil
schedules:
  lunchtime: {days: [mon, tue, wed, thu, fri], from: "12:00", to: "13:15"}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  games: {lists: [ut1/games]}
  social: {lists: [ut1/social_networks]}
groups:
  pupil:
    default: acceptable
    safe_search: strict
    categories: {adult: unacceptable, games: blocked, social: blocked}
  staff:
    inherits: pupil
    categories: {games: acceptable, social: acceptable}
overlay:
  may_loosen: [games]
  may_map_to: [staff]  # a school names its own staff network (SITE)
"""

SITE = """\
school: North Academy
identity:
  default_group: pupil
  networks:
    - {cidr: 10.1.0.0/16, group: staff}
groups:
  pupil:
    categories:
      games: {acceptable_at: lunchtime}
local:
  block:
    - {entry: play.example, category: games}
"""


@pytest.fixture(autouse=True)
def _process_site() -> Iterator[None]:
    """The CLI sets this process's site from each config; later tests expect the default."""
    yield
    set_site(DEFAULT_SITE)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def layered(tmp_path: Path, site: str, trust: str = TRUST) -> object:
    trust_path = write(tmp_path, "trust.yaml", trust)
    return layered_policy(site, tmp_path / "policy.yaml", trust_path)


def problems(tmp_path: Path, site: str, trust: str = TRUST) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        layered(tmp_path, site, trust)
    return [str(p) for p in caught.value.problems]


def test_the_overlay_replaces_site_facts_and_loosens_what_the_trust_allows(
    tmp_path: Path,
) -> None:
    """The school's name and networks are its own; games may open at lunchtime (may_loosen)."""
    policy = layered(tmp_path, SITE)
    assert policy.school == "North Academy"  # type: ignore[attr-defined]
    pupil = policy.groups["pupil"]  # type: ignore[attr-defined]
    assert pupil.action_for("games").label == "acceptable_at:lunchtime"
    assert pupil.action_for("adult").kind == "unacceptable"
    assert pupil.safe_search == "strict"


@pytest.mark.parametrize(
    ("site", "line", "says"),
    [
        ("groups:\n  pupil:\n    categories: {social: acceptable}\n", 3, "social would be looser"),
        (
            "groups:\n  pupil:\n    default: acceptable\n    safe_search: moderate\n",
            4,
            "safe_search",
        ),
        ("groups:\n  pupil:\n    categories:\n      adult: blocked\n", 4, "adult would be looser"),
        ("categories:\n  games: {lists: [ut1/chat]}\n", 2, "category 'games' is the trust's"),
        ("schedules:\n  lunchtime: {from: '00:00', to: '24:00'}\n", 2, "schedule 'lunchtime'"),
        ("no_decrypt:\n  hosts: [bank.example]\n", 1, "no_decrypt is the trust's"),
        ("groups:\n  pupil:\n    intercept: false\n", 3, "intercept of a trust group"),
        ("groups:\n  pupil:\n    inherits: staff\n", 3, "inherits of a trust group"),
    ],
)
def test_loosening_without_leave_is_an_error_at_its_line(
    tmp_path: Path, site: str, line: int, says: str
) -> None:
    """Each way of opening what the trust closed is refused, naming the overlay's FILE:LINE."""
    found = problems(tmp_path, site)
    assert any(p.startswith(f"{tmp_path / 'policy.yaml'}:{line}: ") and says in p for p in found), (
        found
    )


def test_tightening_needs_no_leave(tmp_path: Path) -> None:
    """A school may make games unacceptable and block social for staff: stricter is always fine."""
    site = "groups:\n  staff:\n    categories: {social: blocked, games: unacceptable}\n"
    staff = layered(tmp_path, site).groups["staff"]  # type: ignore[attr-defined]
    assert staff.action_for("social").kind == "blocked"
    assert staff.action_for("games").kind == "unacceptable"


def test_errors_in_the_trust_name_the_trust_file(tmp_path: Path) -> None:
    """A mistake in the trust's part of the merged policy points at the trust's file and line."""
    trust = TRUST.replace("games: blocked", "games: {acceptable_at: dinner}")
    found = problems(tmp_path, "school: North\n", trust)
    assert found[0].startswith(f"{tmp_path / 'trust.yaml'}:15: "), found
    assert "unknown schedule 'dinner'" in found[0]


def test_may_loosen_must_name_trust_categories(tmp_path: Path) -> None:
    """A trust that lets sites loosen a category it does not have is told so at its line."""
    found = problems(
        tmp_path, "school: N\n", TRUST.replace("may_loosen: [games]", "may_loosen: [gamez]")
    )
    assert found == [f"{tmp_path / 'trust.yaml'}:20: overlay.may_loosen: unknown categories gamez"]


# --- an overlay's identity: the attack is moving pupils into a looser group ---

NO_MAPPING_LEAVE = TRUST.replace(
    "  may_map_to: [staff]  # a school names its own staff network (SITE)\n", ""
)


def test_without_leave_a_site_cannot_map_a_network_into_staff(tmp_path: Path) -> None:
    """North's staff network mapped to the trust's staff group is refused at its line when the
    trust gives no ``may_map_to``: the trust's identity puts those addresses in pupil."""
    found = problems(tmp_path, SITE, NO_MAPPING_LEAVE)
    assert found == [
        f"{tmp_path / 'policy.yaml'}:5: identity: 10.1.0.0/16 would be in staff, looser than "
        "the trust's pupil (social is acceptable there, blocked in pupil; the trust lets sites "
        "map anyone to: none)"
    ]


@pytest.mark.parametrize(
    ("site", "line", "says"),
    [
        # a pupil named into staff by login
        (
            "identity:\n  default_group: pupil\n  users:\n    - {name: p.one, group: staff}\n",
            4,
            "p.one would be in staff",
        ),
        # everyone put in a wide-open group of the school's own
        (
            "identity:\n  default_group: open\ngroups:\n  open:\n    default: acceptable\n",
            2,
            "everyone else would be in open",
        ),
        # a pupil's address bound to a staff login
        (
            "identity:\n  default_group: pupil\n  users:\n"
            "    - {name: s.teacher, group: staff, ips: [10.9.9.9]}\n",
            4,
            "s.teacher would be in staff",
        ),
        # an open group that differs only in safe search
        (
            "identity:\n  default_group: pupil\n  networks:\n"
            "    - {cidr: 10.2.0.0/16, group: lax}\n"
            "groups:\n  lax:\n    inherits: pupil\n    safe_search: off\n",
            4,
            "safe_search is off",
        ),
    ],
)
def test_an_overlay_cannot_move_people_into_a_looser_group(
    tmp_path: Path, site: str, line: int, says: str
) -> None:
    """Every way an overlay's identity could loosen the filter for people the trust puts in
    pupil is a FILE:LINE error in the overlay, whatever ``may_loosen`` says."""
    found = problems(tmp_path, site, NO_MAPPING_LEAVE)
    assert any(p.startswith(f"{tmp_path / 'policy.yaml'}:{line}: ") and says in p for p in found), (
        found
    )


def test_an_overlay_may_map_into_stricter_groups_and_where_the_trust_does(
    tmp_path: Path,
) -> None:
    """Mapping into a group no looser than the trust's (a stricter group of the school's own,
    or staff where the trust's identity already says staff) needs no leave."""
    trust = NO_MAPPING_LEAVE.replace(
        "  default_group: pupil\n",
        "  default_group: pupil\n  networks:\n    - {cidr: 10.5.0.0/16, group: staff}\n",
        1,
    )
    site = (
        "identity:\n  default_group: locked\n  networks:\n"
        "    - {cidr: 10.5.7.0/24, group: staff}\n"
        "groups:\n  locked:\n    inherits: pupil\n    default: blocked\n"
    )
    policy = layered(tmp_path, site, trust)
    assert policy.identity.default_group == "locked"  # type: ignore[attr-defined]


def test_may_map_to_must_name_trust_groups(tmp_path: Path) -> None:
    """A trust's ``may_map_to`` naming no group of its own is its FILE:LINE error."""
    found = problems(
        tmp_path, "school: N\n", TRUST.replace("may_map_to: [staff]", "may_map_to: [staf]")
    )
    assert found == [f"{tmp_path / 'trust.yaml'}:21: overlay.may_map_to: unknown groups staf"]


def test_check_refuses_an_overlay_identity_remap_with_file_and_line(tmp_path: Path) -> None:
    """`schoolgate check` on a site whose overlay puts a pupil in staff without leave fails."""
    config = trust_config(tmp_path, SITE)
    write(config, "trust.yaml", NO_MAPPING_LEAVE)
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config / 'policy.yaml'}:5: identity: 10.1.0.0/16 would be in staff" in result.stderr


def trust_config(tmp_path: Path, site: str) -> Path:
    config = write_config(tmp_path, "sqlite:///" + str(tmp_path / "s.db"), site)
    write(config, "trust.yaml", TRUST)
    settings = config / "schoolgate.yaml"
    settings.write_text(
        settings.read_text("utf-8") + "site: north\ntrust_policy: trust.yaml\n", "utf-8"
    )
    return config


def test_check_and_explain_work_on_the_merged_policy_and_name_the_layer(tmp_path: Path) -> None:
    """`explain` says whether the rule deciding came from the trust's file or the site's."""
    config = trust_config(tmp_path, SITE)
    runner = CliRunner()
    result = runner.invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    args = ["explain", "--group", "pupil", "--json", "--config", str(config)]
    adult = json.loads(
        runner.invoke(cli, ["explain", "http://adult-demo.example/", *args[1:]]).stdout
    )
    assert adult["from"] == f"trust {config / 'trust.yaml'}:15"
    play = json.loads(runner.invoke(cli, ["explain", "http://play.example/", *args[1:]]).stdout)
    assert play["from"] == f"site {config / 'policy.yaml'}:12"


def test_check_refuses_an_overlay_that_loosens_with_file_and_line(tmp_path: Path) -> None:
    """`schoolgate check` prints the overlay's FILE:LINE and fails."""
    config = trust_config(
        tmp_path, SITE.replace("{acceptable_at: lunchtime}", "acceptable\n      social: acceptable")
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config / 'policy.yaml'}:10: group pupil: social would be looser" in result.stderr


def two_sites(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Sites north and south on one SQLite store, sharing ``trust.yaml``."""
    store = "sqlite:///" + str(tmp_path / "shared.db")
    trust_path = write(tmp_path, "trust.yaml", TRUST)
    configs = []
    for site, overlay in (("north", SITE), ("south", "school: South School\n")):
        (tmp_path / site).mkdir()
        config = write_config(tmp_path / site, store, overlay)
        settings = config / "schoolgate.yaml"
        settings.write_text(
            settings.read_text("utf-8") + f"site: {site}\ntrust_policy: {trust_path}\n", "utf-8"
        )
        configs.append(config)
    return trust_path, configs[0], configs[1]


def trust_apply(
    edited: Path, north: Path, south: Path, *extra: str, by: str = "trust.it"
) -> tuple[int, str, str]:
    """`trust apply` by the trust's technician (a trust account, scope *), who proves it with
    their console account."""
    ensure_account(north, "trust.it", "technician", site="*")
    args = ["trust", "apply", str(edited), "--site", str(north), "--site", str(south)]
    args += ["--reason", "termly review", "--by", by, *extra]
    result = CliRunner().invoke(cli, args, input=proof(north, by))
    return result.exit_code, result.stdout, result.stderr


def test_trust_apply_refuses_a_change_one_site_cannot_take(tmp_path: Path) -> None:
    """Taking away leave a site's overlay uses is refused at the overlay's line; nothing moves."""
    trust_path, north, south = two_sites(tmp_path)
    edited = write(tmp_path, "edited.yaml", TRUST.replace("may_loosen: [games]", "may_loosen: []"))
    code, _, err = trust_apply(edited, north, south)
    assert code == 1
    assert f"{north / 'policy.yaml'}:9: group pupil: games would be looser" in err
    assert trust_path.read_text("utf-8") == TRUST


def test_trust_apply_shows_each_sites_impact_and_records_it_there(tmp_path: Path) -> None:
    """Each site's impact is shown; each site's change log gets the change; then it installs."""
    trust_path, north, south = two_sites(tmp_path)
    edited = write(
        tmp_path,
        "edited.yaml",
        TRUST.replace(
            "staff:\n    inherits: pupil\n", "staff:\n    inherits: pupil\n    default: blocked\n"
        ),
    )
    code, out, err = trust_apply(edited, north, south)
    assert code == 0, err
    assert "impact at north:" in out
    assert "impact at south:" in out
    assert "recorded at north as change #1" in out
    assert "recorded at south as change #2" in out
    assert trust_path.read_text("utf-8") == edited.read_text("utf-8")
    listed = CliRunner().invoke(
        cli,
        [
            "changes",
            "export",
            "--format",
            "csv",
            "--from",
            "2000-01-01",
            "--to",
            "2099-12-31",
            "--config",
            str(south),
        ],
    )
    assert listed.exit_code == 0, listed.stderr
    assert ",north" in listed.stdout
    assert ",south" in listed.stdout


def test_trust_apply_needs_a_trust_account(tmp_path: Path) -> None:
    """North's own technician (a school account) proves who they are, but the trust's policy
    is every school's: refused in one line, nothing recorded or installed."""
    trust_path, north, south = two_sites(tmp_path)
    ensure_account(north, "north.it", "technician")
    edited = write(
        tmp_path,
        "edited.yaml",
        TRUST.replace(
            "staff:\n    inherits: pupil\n", "staff:\n    inherits: pupil\n    default: blocked\n"
        ),
    )
    code, _, err = trust_apply(edited, north, south, by="north.it")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "Error: north.it's account is north's: this changes every site, "
        "so it needs a trust account (scope *)"
    )
    assert trust_path.read_text("utf-8") == TRUST
    engine = make_engine("sqlite:///" + str(tmp_path / "shared.db"))
    with session(engine, read_only=True) as s:
        assert s.scalar(select(func.count(Change.seq))) == 0
    engine.dispose()
