"""Escalation: the school's incident tables, as ``config/escalation.yaml``.

The policy's "Actions / Sanctions" tables say, for pupils and for staff,
what follows each kind of incident (refer to the headteacher, inform
parents, safeguarding…). This module validates the file with pydantic (each
problem as ``file:line: message``) and answers "what are the recommended
actions for this incident type, for this group?".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from proxy.yamlfile import ConfigError, Positions, Problem, load_yaml, validate

ESCALATION_FILE = "escalation.yaml"
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$")]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$", min_length=1)]


class IncidentRow(BaseModel):
    """One row of the tables: what the policy calls it, and each table's actions."""

    model_config = ConfigDict(extra="allow", frozen=True)

    describe: str

    def tables(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EscalationFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[Key, str]
    tables: dict[Key, list[GroupName]]
    default_table: Key
    incidents: dict[Key, IncidentRow]

    @model_validator(mode="after")
    def _default_table(self) -> EscalationFile:
        if self.default_table not in self.tables:
            known = ", ".join(self.tables) or "none"
            raise ValueError(f"default_table {self.default_table!r} is not a table ({known})")
        return self


@dataclass(frozen=True, slots=True)
class RecommendedAction:
    key: str
    label: str


@dataclass(frozen=True)
class Escalation:
    """The compiled tables: ``actions_for(incident_type, group)``."""

    source: Path
    labels: dict[str, str]
    table_of_group: dict[str, str]
    default_table: str
    rows: dict[str, dict[str, tuple[str, ...]]]
    descriptions: dict[str, str]

    def table_for(self, group: str) -> str:
        return self.table_of_group.get(group, self.default_table)

    def actions_for(self, incident_type: str, group: str) -> tuple[RecommendedAction, ...]:
        """The recommended actions; an unknown type has none (the reviewers decide)."""
        row = self.rows.get(incident_type)
        if row is None:
            return ()
        keys = row.get(self.table_for(group), ())
        return tuple(RecommendedAction(k, self.labels[k]) for k in keys)

    def describe(self, incident_type: str) -> str:
        return self.descriptions.get(incident_type, incident_type.replace("_", " "))

    def missing_types(self, incident_types: Iterable[str]) -> list[str]:
        return sorted({t for t in incident_types if t not in self.rows})


def _compile(spec: EscalationFile, positions: Positions, source: Path) -> Escalation:
    problems: list[Problem] = []
    table_of_group: dict[str, str] = {}
    for table, groups in spec.tables.items():
        for i, group in enumerate(groups):
            if group in table_of_group:
                problems.append(
                    positions.problem(
                        ("tables", table, i),
                        f"group {group!r} is already in table {table_of_group[group]!r}",
                    )
                )
            table_of_group[group] = table
    rows: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, row in spec.incidents.items():
        extra = row.tables()
        compiled: dict[str, tuple[str, ...]] = {}
        for table in extra:
            if table not in spec.tables:
                problems.append(
                    positions.problem(
                        ("incidents", name, table),
                        f"incidents.{name}: {table!r} is not a table ({', '.join(spec.tables)})",
                    )
                )
        for table in spec.tables:
            if table not in extra:
                problems.append(
                    positions.problem(
                        ("incidents", name),
                        f"incidents.{name}: no actions for table {table!r} "
                        "(write [] when the policy has none)",
                    )
                )
                continue
            value = extra[table]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(
                    positions.problem(
                        ("incidents", name, table),
                        f"incidents.{name}.{table}: expected a list of actions",
                    )
                )
                continue
            for i, action in enumerate(value):
                if action not in spec.actions:
                    problems.append(
                        positions.problem(
                            ("incidents", name, table, i),
                            f"incidents.{name}.{table}: unknown action {action!r} "
                            f"(actions: {', '.join(spec.actions)})",
                        )
                    )
            compiled[table] = tuple(dict.fromkeys(value))
        rows[name] = compiled
    if problems:
        raise ConfigError(problems)
    return Escalation(
        source=source,
        labels=dict(spec.actions),
        table_of_group=table_of_group,
        default_table=spec.default_table,
        rows=rows,
        descriptions={name: row.describe for name, row in spec.incidents.items()},
    )


def load_escalation(path: Path) -> Escalation:
    """Load and check ``escalation.yaml``; raises ``ConfigError`` with one line per problem."""
    data, positions = load_yaml(path)
    spec = validate(EscalationFile, data, positions)
    return _compile(spec, positions, path)


def check_against_policy(
    escalation: Escalation, incident_types: dict[str, int], policy_file: str
) -> list[Problem]:
    """An incident type the policy raises (type → its line) that the tables lack."""
    return [
        Problem(
            policy_file,
            incident_types[t],
            f"incident type {t!r} has no row in {escalation.source}",
        )
        for t in escalation.missing_types(incident_types)
    ]
