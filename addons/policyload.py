"""PolicyLoader: holds the filterset in force and reloads it when files change.

A changed policy or list source is loaded completely, then swapped in with
one assignment; a bad file is logged with its ``file:line`` errors and the
last good filterset stays in force.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.utils.asyncio_utils import create_task

from proxy.controls import NO_CONTROLS, Controls
from proxy.filterset import Filterset, load_filterset
from proxy.lists import ListError, build_matcher, index_stamp
from proxy.policy import Policy
from proxy.settings import SETTINGS_FILE
from proxy.trust import load_site_policy
from proxy.yamlfile import ConfigError, Problem

log = logging.getLogger("schoolgate.reload")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _policy_mtime(policy: Policy) -> tuple[float, float]:
    """The site's policy file, and the trust's it overlays (proxy/trust.py): either reloads."""
    return _mtime(policy.source), _mtime(policy.trust) if policy.trust else 0.0


class PolicyLoader:
    def __init__(self, config_dir: Path, filterset: Filterset) -> None:
        self.config_dir = config_dir
        self.filterset = filterset
        # Overrides and suspensions in force, refreshed from the store by `Overrides`.
        self.controls: Controls = NO_CONTROLS
        # Called with (old, new, what) after each swap (change control records policy edits).
        self.on_swap: list[Callable[[Filterset, Filterset, str], None]] = []
        # Called with (what, problems) when a reload is refused (change control records
        # edits that would weaken the illegal lists).
        self.on_refused: list[Callable[[str, list[Problem]], None]] = []
        self.reloads = 0
        self.failures = 0
        self._policy_mtime = _policy_mtime(filterset.policy)
        self._settings_mtime = _mtime(config_dir / SETTINGS_FILE)
        self._lists_stamp = index_stamp(filterset.settings)
        self._task: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_reload_ms",
            int,
            2000,
            "Milliseconds between checks for a changed policy, settings or list source (0: never).",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_reload_ms" in updated and ctx.options.schoolgate_reload_ms < 0:
            raise exceptions.OptionsError("schoolgate_reload_ms must not be negative")

    def running(self) -> None:
        if ctx.options.schoolgate_reload_ms > 0:
            self._task = create_task(self._watch(), name="schoolgate reload", keep_ref=True)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(ctx.options.schoolgate_reload_ms / 1000)
            try:
                await self.check_for_changes()
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("reload check failed")

    async def check_for_changes(self) -> None:
        """Reload whatever changed on disk; settings first, since they name the rest."""
        settings_mtime = _mtime(self.config_dir / SETTINGS_FILE)
        policy_mtime = _policy_mtime(self.filterset.policy)
        stamp = index_stamp(self.filterset.settings)
        current = self.filterset
        build: Callable[[], Filterset]
        if settings_mtime != self._settings_mtime:
            what = "settings"

            def build() -> Filterset:
                return load_filterset(self.config_dir)
        elif stamp != self._lists_stamp:
            what = "lists"

            def build() -> Filterset:
                return current.with_lists(build_matcher(current.settings))
        elif policy_mtime != self._policy_mtime:
            what = "policy"

            def build() -> Filterset:
                return current.with_policy(
                    load_site_policy(current.policy.source, current.settings.trust_policy)
                )
        else:
            return
        self._settings_mtime, self._policy_mtime, self._lists_stamp = (
            settings_mtime,
            policy_mtime,
            stamp,
        )
        try:
            new = await asyncio.to_thread(build)
        except ConfigError as exc:
            self._failed(exc.problems, what)
        except ListError as exc:
            self._failed([Problem("", 0, str(exc))], what)
        else:
            self._swap(new, what)

    def _swap(self, new: Filterset, what: str) -> None:
        old, self.filterset = self.filterset, new
        for hook in self.on_swap:
            hook(old, new, what)
        self.reloads += 1
        gc.freeze()  # the new lists are long-lived: keep them out of the collector's scans
        log.info("reloaded %s: %s", what, new.policy.source)

    def _failed(self, problems: list[Problem], what: str) -> None:
        self.failures += 1
        for problem in problems:
            log.error("%s not reloaded, keeping the last good one: %s", what, problem)
        for hook in self.on_refused:
            hook(what, problems)
