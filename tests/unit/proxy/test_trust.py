"""A trust policy with school overlays: tighten freely, loosen only what the trust allows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import cli
from proxy.trust import layered_policy
from proxy.yamlfile import ConfigError
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
