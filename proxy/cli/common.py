"""What every ``schoolgate`` subcommand shares: ``--config``, one-line errors, loading.

Each command module imports these rather than defining its own, so every
command takes ``--config DIR`` the same way and fails the same way; the
commands that write open the store the same way (``open_store``), take
``--by`` the same way and read times in the school's timezone the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from proxy.filterset import Filterset, load_filterset
from proxy.store import control, migrate
from proxy.store.engine import StoreDown, database_url, down_reason, is_down, make_engine, session
from proxy.store.site import set_site
from proxy.yamlfile import ConfigError

config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("config"),
    show_default=True,
    help="Folder holding schoolgate.yaml and policy.yaml.",
)


def fail(message: str) -> click.ClickException:
    """A one-line error for the user; exit status 1 (2 is click's own usage errors)."""
    return click.ClickException(message.replace("\n", "; "))


def open_filterset(config_dir: Path) -> Filterset:
    """The configuration, or every problem on stderr and the first as the one-line error."""
    try:
        return load_filterset(config_dir)
    except ConfigError as exc:
        for problem in exc.problems[1:]:
            click.echo(str(problem), err=True)
        raise fail(str(exc.problems[0])) from None


by_option = click.option(
    "--by",
    "by",
    required=True,
    help="Who is doing this: their console account (asks their password and code).",
)


@dataclass
class Store:
    fs: Filterset
    engine: Engine

    def now(self) -> datetime:
        return datetime.now(UTC)

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with session(self.engine) as s:
                yield s
        except StoreDown as exc:
            raise fail(str(exc)) from None
        except control.ControlError as exc:
            raise fail(str(exc)) from None


def open_store(config_dir: Path) -> Store:
    """The configuration and the store, brought up to date; a store that is down is one line."""
    fs = open_filterset(config_dir)
    set_site(fs.settings.site)  # every row this command writes names its site
    url = database_url(fs.settings)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    except Exception as exc:
        if is_down(exc):
            shown = engine.url.render_as_string(hide_password=True)
            raise fail(f"the store at {shown} is unavailable: {down_reason(exc)}") from None
        raise
    return Store(fs, engine)


def parse_time(text: str, store: Store, option: str, *, end_of_day: bool = False) -> datetime:
    """ISO date or date-time; no zone means the school's timezone. A bare date as an end means
    the end of that day."""
    zone = store.fs.policy.timezone
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=zone)
            return start + timedelta(days=1) if end_of_day else start
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"{option} {text!r}: not a date or time (e.g. 2026-12-18 or 2026-12-18T15:30)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def period_end(
    store: Store, starts: datetime, until: str | None, days: int | None, *, default_days: int | None
) -> datetime | None:
    if until is not None and days is not None:
        raise fail("give --until or --days, not both")
    if until is not None:
        return parse_time(until, store, "--until", end_of_day=True)
    if days is not None:
        if days <= 0:
            raise fail("--days must be at least 1")
        return starts + timedelta(days=days)
    return starts + timedelta(days=default_days) if default_days else None


def show_time(value: datetime | None, store: Store) -> str:
    if value is None:
        return "-"
    return value.astimezone(store.fs.policy.timezone).strftime("%Y-%m-%d %H:%M")


site_option = click.option(
    "--site",
    help="Only this site's incidents, or `all` for every site of the trust "
    "(default: the site in schoolgate.yaml).",
)


def site_scope(store: Store, site: str | None) -> str | None:
    """The site to show: the one asked for, every one (None) for `all`, else this one's."""
    if site == "all":
        return None
    return site or store.fs.settings.site
