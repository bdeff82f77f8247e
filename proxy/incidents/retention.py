"""Retention: deleting what is past ``retention_days``, and the daily housekeeping thread.

``purge_access_log`` drops access-log lines older than the access
retention (rewriting the file beside itself and renaming it into place,
which the proxy's ``WatchedFileHandler`` notices and reopens) and deletes
rotated copies older than that. ``Housekeeper`` runs in the proxy: once a
day it purges the store and the log, and sends the digest when it is due.
With ``--workers N`` every worker has one, but only the holder of an
exclusive lock on ``DATA_DIR/housekeeping.lock`` does the work (another
takes over if that worker dies), so a digest is sent once, not N times.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, or_, select

from proxy.incidents import digest, logindex, timeline
from proxy.incidents import store as incidents
from proxy.incidents.alerts import Alerter, digest_channels
from proxy.incidents.keyedhash import load_or_create_key
from proxy.incidents.models import Incident
from proxy.settings import Settings
from proxy.store.engine import session

log = logging.getLogger("schoolgate.retention")
STATE_FILE = "housekeeping.json"
LOCK_FILE = "housekeeping.lock"
INDEX_EVERY = timedelta(minutes=15)


def purge_access_log(path: Path, cutoff: datetime) -> int:
    """Remove lines older than ``cutoff`` from the access log and its rotated copies, and
    the index of every log file so deleted or rewritten (it must show no more than the log)."""
    try:
        return _purge_access_log(path, cutoff)
    finally:
        logindex.prune(path)


def _purge_access_log(path: Path, cutoff: datetime) -> int:
    removed = 0
    for rotated in path.parent.glob(path.name + ".*"):
        mtime = datetime.fromtimestamp(rotated.stat().st_mtime, UTC)
        if mtime < cutoff:
            removed += sum(1 for _ in rotated.open("rb"))
            rotated.unlink()
    if not path.exists():
        return removed
    kept: list[str] = []
    dropped = 0
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                when = datetime.fromisoformat(json.loads(line)["time"])
            except (ValueError, KeyError, TypeError):
                kept.append(line)  # not ours to judge: keep it
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when < cutoff:
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        tmp = path.with_name(f".{path.name}.purge")
        with tmp.open("w", encoding="utf-8") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    return removed + dropped


def purge_all(
    settings: Settings, engine: Engine, now: datetime, *, every_site: bool = False
) -> dict[str, int]:
    """Everything past retention: this site's closed incidents, searches and alert deliveries
    (every site's with ``every_site``, by this site's retention), and this gateway's
    access-log lines."""
    with session(engine) as s:
        purged = incidents.purge(
            s,
            now,
            settings.retention_days.incidents,
            settings.retention_days.access,
            site=None if every_site else settings.site,
        )
    lines = purge_access_log(
        settings.access_log_path, now - timedelta(days=settings.retention_days.access)
    )
    return {
        "incidents": purged.incidents,
        "reviews": purged.reviews,
        "searches": purged.searches,
        "alert_deliveries": purged.alert_deliveries,
        "access_log_lines": lines,
    }


def send_digest(
    settings: Settings, engine: Engine, alerter: Alerter, school: str, now: datetime
) -> int:
    """Queue a digest of the incidents not yet in one; the number of incidents it holds."""
    channels = digest_channels(settings.alerts)
    if not channels:
        return 0
    with session(engine) as s:
        # Every incident not yet in a digest, and every illegal one not yet closed, even if
        # a digest (or the at-once alert, which may have had nobody to go to) carried it.
        pending = list(
            s.scalars(
                select(Incident)
                .where(
                    or_(
                        Incident.digested_at.is_(None),
                        and_(Incident.severity == "illegal", Incident.status != "closed"),
                    )
                )
                # This school's only: with one store for a trust, each site sends its own.
                .where(Incident.site == settings.site)
                .order_by(Incident.first_seen)
            )
        )
        if not pending:
            return 0
        alerter.send(digest.build(pending, school, now), channels)
        for incident in pending:
            incident.digested_at = now
    return len(pending)


class Housekeeper:
    """A thread that purges daily and sends the digest when due; ``tick`` does one round."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        alerter: Alerter,
        school: Callable[[], str],
        every_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.alerter = alerter
        self.school = school
        self.every_s = every_s
        self._state_path = settings.data_dir / STATE_FILE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock: int | None = None
        self._indexed: datetime | None = None

    def _holds_lock(self) -> bool:
        """Whether this process is the one that does the housekeeping (non-blocking)."""
        if self._lock is not None:
            return True
        fd = os.open(self.settings.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock = fd
        return True

    def _state(self) -> dict[str, str]:
        try:
            data = json.loads(self._state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, state: dict[str, str]) -> None:
        tmp = self._state_path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self._state_path)

    def tick(self, now: datetime) -> None:
        state = self._state()
        last_purge = datetime.fromisoformat(state["purge"]) if "purge" in state else None
        if last_purge is None or now - last_purge >= timedelta(days=1):
            counts = purge_all(self.settings, self.engine, now)
            log.info("daily purge: %s", counts)
            state["purge"] = now.isoformat()
            self._save(state)
        if self._indexed is None or now - self._indexed >= INDEX_EVERY:
            self._index()
            self._indexed = now
        config = self.settings.alerts.digest
        last_digest = datetime.fromisoformat(state["digest"]) if "digest" in state else None
        if digest.due(last_digest, now, config.every, config.hour):
            sent = send_digest(self.settings, self.engine, self.alerter, self.school(), now)
            log.info("digest: %d incident(s)", sent)
            state["digest"] = now.isoformat()
            self._save(state)

    def _index(self) -> None:
        """Keep the index by person up to date (every ``INDEX_EVERY``: the lines since the
        last time), so a DSL's first look at a month of history waits for at most that
        many minutes' lines to be indexed, not a day's. Not every minute: a growing file's
        index is written whole each time (20 MB a day at 5,000,000 lines). A failure here
        is logged, not fatal: the console indexes what it needs itself."""
        try:
            key = load_or_create_key(self.settings.data_dir)
            for path in timeline.log_files(self.settings.access_log_path):
                logindex.build(path, key)
        except (OSError, ValueError):
            log.exception("indexing the access log")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._holds_lock():
                    self.tick(datetime.now(UTC))
            except Exception:
                # The store may be down: try again next round, the proxy carries on.
                log.exception("housekeeping failed; trying again later")
            self._stop.wait(self.every_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="schoolgate-housekeeping", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._lock is not None:
            os.close(self._lock)  # closing releases the lock for another worker
            self._lock = None
