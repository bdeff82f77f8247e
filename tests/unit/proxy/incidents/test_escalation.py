"""The escalation tables: the shipped file reproduces the school policy's tables, errors by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.incidents.escalation import load_escalation
from proxy.yamlfile import ConfigError
from tests.shared import shared

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "config" / "escalation.yaml"
POLICY = ("school-policies", "003_8397a4ab86ebde65.txt")

# The policy's row wording (its first words) → the incident type in escalation.yaml.
PUPIL_ROWS = {
    "Deliberately accessing or trying to access material that could be": "illegal",
    "Unauthorised use of non-educational sites": "non_educational_in_lessons",
    "Unauthorised use of mobile phone": "mobile_device",
    "Unauthorised use of social media": "social_media",
    "Unauthorised downloading or uploading": "file_transfer",
    "Allowing others to access school": "sharing_passwords",
    "Attempting to access or accessing the school network, using another": "other_pupil_account",
    "Attempting to access or accessing the school network, using the account": "staff_account",
    "Corrupting or destroying the data": "corrupting_data",
    "Sending an email, text or message": "offensive_messages",
    "Continued infringements": "continued_infringements",
    "Actions which could bring the school": "disrepute",
    "Using proxy sites": "subvert_filtering",
    "Accidentally accessing offensive": "accidental_offensive_unreported",
    "Deliberately accessing or trying to access offensive": "deliberate_offensive",
    "Receipt or transmission of material": "copyright",
}
PUPIL_COLUMNS = [
    "refer_class_teacher",
    "refer_headteacher",
    "refer_police",
    "refer_technical_staff",
    "inform_parents",
    "remove_access",
    "warning",
    "sanction",
    "safeguarding",
]
STAFF_ROWS = {
    "Deliberately accessing or trying to access material that could be": ["illegal"],
    "Inappropriate personal use": ["social_media", "non_educational_in_lessons"],
    "Unauthorised downloading or uploading": ["file_transfer"],
    "Allowing others to access school": [
        "sharing_passwords",
        "other_pupil_account",
        "staff_account",
    ],
    "Careless use of personal data": ["careless_personal_data"],
    "Deliberate actions to breach": ["breach_security_rules"],
    "Corrupting or destroying the data": ["corrupting_data"],
    "Sending an email, text or message": ["offensive_messages"],
    "Using personal email": ["communicating_with_pupils"],
    "Actions which could compromise": ["professional_standing"],
    "Actions which could bring the school": ["disrepute"],
    "Using proxy sites": ["subvert_filtering"],
    "Accidentally accessing offensive": ["accidental_offensive_unreported"],
    "Deliberately accessing or trying to access offensive": ["deliberate_offensive"],
    "Breaching copyright": ["copyright"],
    "Continued infringements": ["continued_infringements"],
}
STAFF_COLUMNS = [
    "refer_headteacher",
    "refer_local_authority",
    "refer_police",
    "refer_technical_staff",
    "warning",
    "suspension",
    "disciplinary",
]


def policy_rows(start: str, stop: str) -> list[tuple[str, list[bool]]]:
    """The rows of one table in the policy text: each cell starts with a tab."""
    lines = shared(*POLICY).read_text(encoding="utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip() == start)
    last = next(i for i in range(first + 1, len(lines)) if lines[i].strip() == stop)
    rows: list[list[str]] = []
    current: list[str] | None = None
    for line in lines[first:last]:
        if line.startswith("\t"):
            if current is None:
                current = [line.strip()]
                rows.append(current)
            else:
                current.append(line.strip())
        elif line.strip():
            if current is not None:
                current[-1] += line.strip()
        else:
            current = None
    out: list[tuple[str, list[bool]]] = []
    pending = ""
    for row in rows:
        # A footnote mark splits one row of the copyright line in two; join them.
        if len(row) == 1 and row[0]:
            pending = row[0]
            continue
        name = pending or row[0]
        cells = row if pending else row[1:]
        pending = ""
        out.append((" ".join(name.split()), [bool(c) for c in cells]))
    return out


def table(rows: list[tuple[str, list[bool]]], columns: list[str]) -> dict[str, set[str]]:
    found = {}
    for name, cells in rows:
        if name in {"Staff", "Incidents:"}:  # the tables' headings
            continue
        marks = cells[-len(columns) :]  # the staff table has an empty first column
        found[name] = {col for col, mark in zip(columns, marks, strict=True) if mark}
    return found


@pytest.mark.shared_data
def test_pupil_table_matches_the_policy() -> None:
    """Every row of the policy's pupil table has the same actions in escalation.yaml."""
    escalation = load_escalation(CONFIG)
    rows = table(policy_rows("Incidents:", "Staff"), PUPIL_COLUMNS)
    assert len(rows) == len(PUPIL_ROWS)
    for name, marked in rows.items():
        key = next(v for k, v in PUPIL_ROWS.items() if " ".join(k.split()) in name)
        got = {a.key for a in escalation.actions_for(key, "pupil")}
        assert got == marked, name


@pytest.mark.shared_data
def test_staff_table_matches_the_policy() -> None:
    """Every row of the policy's staff table has the same actions in escalation.yaml."""
    escalation = load_escalation(CONFIG)
    rows = table(
        policy_rows("Staff", "Acceptable Use agreement for School Equipment and Hwb"), STAFF_COLUMNS
    )
    assert len(rows) == len(STAFF_ROWS)
    for name, marked in rows.items():
        keys = next(v for k, v in STAFF_ROWS.items() if " ".join(k.split()) in name)
        for key in keys:
            got = {a.key for a in escalation.actions_for(key, "staff")}
            assert got == marked, (name, key)


def test_groups_follow_their_table() -> None:
    """The head follows the staff table, a guest the pupil one, an unknown group the default."""
    escalation = load_escalation(CONFIG)
    assert escalation.table_for("head") == "staff"
    assert escalation.table_for("guest") == "pupil"
    assert escalation.table_for("visitors") == "pupil"
    assert escalation.actions_for("no_such_type", "pupil") == ()


def test_every_policy_incident_type_has_a_row() -> None:
    """Each incident type the demo policy raises is in the tables."""
    from proxy.policy import load_policy

    escalation = load_escalation(CONFIG)
    policy = load_policy(ROOT / "config" / "policy.yaml")
    types = {c.incident for c in policy.categories.values() if c.incident} | {"illegal"}
    assert escalation.missing_types(types) == []


BAD = """\
actions:
  warning: Warning
tables:
  pupil: [pupil]
  staff: [staff, pupil]
default_table: pupil
incidents:
  illegal:
    describe: x
    pupil: [warning, call_the_army]
  social_media:
    describe: y
    pupil: []
"""


def test_mistakes_are_reported_by_line(tmp_path: Path) -> None:
    """An unknown action, a group in two tables and a missing table each name their line."""
    path = tmp_path / "escalation.yaml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_escalation(path)
    lines = str(caught.value).splitlines()
    assert f"{path}:5: group 'pupil' is already in table 'pupil'" in lines
    assert any(line.startswith(f"{path}:10: ") and "call_the_army" in line for line in lines)
    assert any(
        line.startswith(f"{path}:8: ") and "no actions for table 'staff'" in line for line in lines
    )
    assert any(line.startswith(f"{path}:11: ") and "table 'staff'" in line for line in lines)


def test_unknown_default_table_is_an_error(tmp_path: Path) -> None:
    """default_table must name a table."""
    path = tmp_path / "escalation.yaml"
    path.write_text(
        "actions: {}\ntables: {pupil: [pupil]}\ndefault_table: teachers\nincidents: {}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="default_table 'teachers' is not a table"):
        load_escalation(path)
