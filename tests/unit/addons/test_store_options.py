"""The intervals the fault tests shorten: the store watchdog and the metrics refresh.

Both keep their product defaults (15 s, 5 s); a value set with ``--set``
reaches the writer's supervisor and the refresh loop, and nonsense is refused
as the options are set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.metrics import Metrics
from addons.policyload import PolicyLoader
from addons.store import StoreWriter
from proxy.filterset import load_filterset
from proxy.store.writer import APPLY_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def loader(tmp_path: Path) -> PolicyLoader:
    """A loader over a copy of the shipped config/ (its store and data land in tmp_path)."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "blocklists" / "demo", tmp_path / "blocklists" / "demo")
    return PolicyLoader(config, load_filterset(config))


def test_the_watchdog_option_reaches_the_writer(loader: PolicyLoader) -> None:
    """15 s unless set; a value set is the supervisor's bound; zero is refused."""
    store = StoreWriter(loader)
    try:
        with taddons.context(store) as tctx:
            assert store.writer.apply_timeout_s == APPLY_TIMEOUT_S == 15.0
            tctx.configure(store, schoolgate_store_watchdog_ms=2500)
            assert store.writer.apply_timeout_s == 2.5
            with pytest.raises(exceptions.OptionsError, match="must be positive"):
                tctx.configure(store, schoolgate_store_watchdog_ms=0)
    finally:
        store.engine.dispose()


def test_the_metrics_refresh_option_defaults_to_five_seconds(loader: PolicyLoader) -> None:
    """5000 ms unless set; zero or less is refused (the loop would spin)."""
    metrics = Metrics(loader)
    with taddons.context(metrics) as tctx:
        assert tctx.options.schoolgate_metrics_refresh_ms == 5000
        tctx.configure(metrics, schoolgate_metrics_refresh_ms=250)
        assert tctx.options.schoolgate_metrics_refresh_ms == 250
        with pytest.raises(exceptions.OptionsError, match="must be positive"):
            tctx.configure(metrics, schoolgate_metrics_refresh_ms=-1)
