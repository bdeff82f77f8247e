"""The policy loader: the DESIGN example, every config file, and the errors a technician sees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.policy import load_policy, parse_policy
from proxy.settings import load_settings
from proxy.yamlfile import ConfigError
from tests.shared import shared

ROOT = Path(__file__).resolve().parents[3]

BASE = """\
school: Test School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
  users:
    - {name: head.teacher, group: head, ips: [10.20.0.5]}
schedules:
  lunchtime: {days: [mon, tue, wed, thu, fri], from: "12:00", to: "13:15"}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  games: {lists: [ut1/games]}
groups:
  pupil:
    default: acceptable
    categories:
      adult: unacceptable
      games: {acceptable_at: lunchtime}
  head:
    default: acceptable
  guest:
    inherits: pupil
"""


def design_yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", shared("DESIGN.md").read_text(encoding="utf-8"), re.S)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, Path("policy.yaml"))
    return str(caught.value).splitlines()


@pytest.mark.shared_data
def test_design_example_loads_as_written(tmp_path: Path) -> None:
    """The policy YAML in DESIGN.md loads without a change."""
    path = tmp_path / "policy.yaml"
    path.write_text(design_yaml_blocks()[0], encoding="utf-8")
    policy = load_policy(path)
    assert set(policy.groups) == {"pupil", "staff", "head", "guest"}
    assert policy.groups["head"].action_for("social").kind == "acceptable"
    assert policy.groups["guest"].action_for("games").kind == "acceptable_at"


@pytest.mark.shared_data
def test_design_settings_load_as_written(tmp_path: Path) -> None:
    """The settings YAML in DESIGN.md loads, with paths resolved against its folder."""
    (tmp_path / "schoolgate.yaml").write_text(design_yaml_blocks()[1], encoding="utf-8")
    settings = load_settings(tmp_path)
    assert settings.listen_port == 8080
    assert settings.data_dir == (tmp_path / ".." / "var").resolve()
    assert settings.sources["ut1"].format == "ut1"


@pytest.mark.parametrize("name", ["policy.yaml", "schoolgate.yaml"])
def test_every_config_file_loads(name: str) -> None:
    """Every file shipped in config/ loads."""
    if name == "policy.yaml":
        assert load_policy(ROOT / "config" / name).school
    else:
        assert load_settings(ROOT / "config").sources


def test_inheritance_overrides_only_what_differs() -> None:
    """A group inherits its parent's actions and default and can change one category."""
    policy = parse_policy(
        BASE.replace(
            "  guest:\n    inherits: pupil\n",
            "  guest:\n    inherits: pupil\n    categories:\n      adult: blocked\n",
        ),
        Path("p.yaml"),
    )
    guest = policy.groups["guest"]
    assert guest.action_for("adult").kind == "blocked"
    assert guest.action_for("games").kind == "acceptable_at"
    assert guest.chain == ("guest", "pupil")


def test_illegal_category_is_blocked_for_every_group() -> None:
    """An illegal category is unacceptable for groups that never mention it."""
    policy = parse_policy(BASE, Path("p.yaml"))
    assert {g.action_for("child_abuse").kind for g in policy.groups.values()} == {"unacceptable"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("default_group: guest", "default_group: nobody"),
            r"^policy.yaml:4: .*unknown group 'nobody'",
        ),
        (
            ("{cidr: 10.10.0.0/16, group: pupil}", "{cidr: 10.10.0.0/16, group: pupils}"),
            r"^policy.yaml:6: .*unknown group 'pupils'",
        ),
        (
            ("{acceptable_at: lunchtime}", "{acceptable_at: breaktime}"),
            r"^policy.yaml:20: .*unknown schedule 'breaktime'",
        ),
        (
            ("      adult: unacceptable", "      adults: unacceptable"),
            r"^policy.yaml:19: unknown category 'adults'",
        ),
        (("cidr: 10.10.0.0/16", "cidr: 10.10.0.0/99"), r"^policy.yaml:6: .*not a network"),
        (('from: "12:00"', 'from: "25:00"'), r"^policy.yaml:10: .*not a time of day"),
        (("timezone: Europe/London", "timezone: Mars/Base"), r"^policy.yaml:2: .*unknown timezone"),
        (
            ("inherits: pupil", "inherits: guest"),
            r"^policy.yaml:24: groups inherit in a loop: guest → guest",
        ),
        (("inherits: pupil", "inherits: teacher"), r"^policy.yaml:24: unknown group 'teacher'"),
        (("      adult: unacceptable", "      adult: maybe"), r"^policy.yaml:19: "),
        (
            (
                "  head:\n    default: acceptable\n",
                "  head:\n    default: acceptable\n    categories:\n"
                "      child_abuse: acceptable\n",
            ),
            r"^policy.yaml:24: category 'child_abuse' is illegal: no group can open it",
        ),
        (
            (
                "  head:\n    default: acceptable\n",
                "  head:\n    default: acceptable\n    categories:\n"
                "      child_abuse: {acceptable_for: [head.teacher]}\n",
            ),
            r"^policy.yaml:24: category 'child_abuse' is illegal",
        ),
        (
            ("school: Test School\n", "school: Test School\nschool: Again\n"),
            r"^policy.yaml:2: duplicate key 'school'",
        ),
        (("groups:", "groups: [\n"), r"^policy.yaml:\d+: YAML syntax error"),
        (
            ("  games: {lists: [ut1/games]}", "  games: {lists: [ut1/games], colour: red}"),
            r"^policy.yaml:14: .*colour: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_policy_is_rejected_with_file_and_line(change: tuple[str, str], expected: str) -> None:
    """Each mistake is reported as policy.yaml:LINE: what is wrong."""
    old, new = change
    assert old in BASE
    lines = errors_of(BASE.replace(old, new, 1))
    assert any(re.search(expected, line) for line in lines), lines


def test_every_problem_is_reported_not_only_the_first() -> None:
    """Two mistakes give two lines."""
    text = BASE.replace("default_group: guest", "default_group: nobody").replace(
        "{acceptable_at: lunchtime}", "{acceptable_at: breaktime}"
    )
    assert len(errors_of(text)) == 2


def test_acceptable_for_names_known_users_only() -> None:
    """A nominated user must be listed under identity.users, so a typo is caught."""
    text = BASE.replace(
        "      games: {acceptable_at: lunchtime}", "      games: {acceptable_for: [h.teacher]}"
    )
    assert any("unknown user 'h.teacher'" in line for line in errors_of(text))


def test_unquoted_times_read_as_times() -> None:
    """YAML 1.1 reads 12:00 as the number 720; the loader still reads it as noon."""
    policy = parse_policy(BASE.replace('"12:00"', "12:00").replace('"13:15"', "13:15"), Path("p"))
    action = policy.groups["pupil"].action_for("games")
    assert action.schedules[0].describe() == "lunchtime (mon,tue,wed,thu,fri 12:00–13:15)"


def test_missing_file_is_one_line() -> None:
    """A policy file that does not exist is one clear line."""
    with pytest.raises(ConfigError, match=r"^/nonexistent/policy.yaml: file not found$"):
        load_policy(Path("/nonexistent/policy.yaml"))
