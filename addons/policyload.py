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

from proxy.content.phrases import PHRASES_FILE
from proxy.controls import NO_CONTROLS, Controls
from proxy.filterset import Filterset, load_filterset
from proxy.lists import ListError, build_matcher, index_stamp
from proxy.policy import Policy
from proxy.settings import SETTINGS_FILE
from proxy.trust import load_site_policy
from proxy.watch import FileWatch
from proxy.yamlfile import ConfigError, Problem

log = logging.getLogger("schoolgate.reload")


def _policy_files(config_dir: Path, filterset: Filterset) -> list[Path]:
    """Settings, the site's policy, the content phrases beside it and the trust's policy it
    overlays (proxy/trust.py): an edit of any reloads."""
    policy: Policy = filterset.policy
    files = [config_dir / SETTINGS_FILE, policy.source, policy.source.parent / PHRASES_FILE]
    return [*files, policy.trust] if policy.trust else files


def _reload_policy(fs: Filterset) -> Filterset:
    return fs.with_policy(load_site_policy(fs.policy.source, fs.settings.trust_policy))


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
        self._files = FileWatch(_policy_files(config_dir, filterset))
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
        """Reload whatever changed on disk; settings first, since they name the rest.

        A changed policy (or its content phrases) and changed lists are two steps, each
        kept or refused on its own, so a bad policy edit never holds back new lists."""
        changed = self._files.changed()
        stamp = index_stamp(self.filterset.settings)
        lists, self._lists_stamp = stamp != self._lists_stamp, stamp
        steps: list[tuple[str, Callable[[Filterset], Filterset]]] = []
        if self.config_dir / SETTINGS_FILE in changed:
            steps.append(("settings", lambda _: load_filterset(self.config_dir)))
        else:
            if changed:
                steps.append(("policy", _reload_policy))
            if lists:
                steps.append(("lists", lambda fs: fs.with_lists(build_matcher(fs.settings))))
        # A failed step is not retried until a file changes again.
        for what, step in steps:
            try:
                new = await asyncio.to_thread(step, self.filterset)
            except ConfigError as exc:
                self._failed(exc.problems, what)
            except ListError as exc:
                self._failed([Problem("", 0, str(exc))], what)
            else:
                self._swap(new, what)

    def _swap(self, new: Filterset, what: str) -> None:
        old, self.filterset = self.filterset, new
        # new settings may name another policy file: watch the files now in force
        self._files.watch(_policy_files(self.config_dir, new))
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
