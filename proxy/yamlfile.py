"""YAML files that remember where each value came from.

Technicians edit YAML by hand, so every error must name ``file:line``. This
module loads a YAML document into plain data plus a map from each value's
path (``("groups", "pupil", "categories")``) to its line, and turns pydantic
validation errors into one ``file:line: message`` per problem.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, at a line (0 when unknown)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if not self.file:
            return self.message
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is one line per problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: str | Path, line: int, message: str) -> ConfigError:
        return cls([Problem(str(file), line, message)])


@dataclass
class Positions:
    """Line numbers (1-based) of every mapping key and sequence item in a document."""

    file: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int:
        """The line of the deepest known prefix of ``loc``."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        return Problem(self.file, self.line_of(loc), message)


def _build(node: yaml.Node, loc: Loc, positions: Positions) -> Any:
    positions.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, (*loc, "<key>"), positions)
            if isinstance(key, list | dict):
                raise ConfigError.single(
                    positions.file, key_node.start_mark.line + 1, "a key must be a plain value"
                )
            if key in result:
                raise ConfigError.single(
                    positions.file, key_node.start_mark.line + 1, f"duplicate key {key!r}"
                )
            positions.lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _build(value_node, (*loc, key), positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), positions) for i, item in enumerate(node.value)]
    # Scalars go through PyYAML's safe constructor so "12:00", "yes" and dates read as usual.
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def parse_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document; raises ``ConfigError`` naming the line of a syntax error."""
    positions = Positions(file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = exc.problem or str(exc)
        raise ConfigError.single(file, line, f"YAML syntax error: {what}") from None
    if node is None:
        return None, positions
    try:
        return _build(node, (), positions), positions
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError.single(file, mark.line + 1 if mark else 0, str(exc.problem)) from None


def load_yaml(path: Path) -> tuple[Any, Positions]:
    """Read and parse a YAML file; a missing or unreadable file is a one-line ``ConfigError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(path, 0, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError.single(path, 0, f"cannot read: {reason}") from None
    return parse_yaml(text, str(path))


def _describe(loc: Loc) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def pydantic_problems(exc: ValidationError, positions: Positions) -> Iterator[Problem]:
    """One problem per pydantic error, at the line of the value it concerns."""
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not str(p).startswith(("function-", "tagged-union")))
        message = str(err["msg"]).removeprefix("Value error, ")
        where = _describe(loc)
        yield positions.problem(loc, f"{where}: {message}" if where else message)


def validate[M: BaseModel](model: type[M], data: Any, positions: Positions) -> M:
    """Validate ``data`` against ``model``; raises ``ConfigError`` with a line per problem."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(list(pydantic_problems(exc, positions))) from None
