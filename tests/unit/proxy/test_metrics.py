"""Metrics count decisions under labels from the configuration, never users or hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from proxy.decision import Decision
from proxy.filterset import Filterset, load_filterset
from proxy.metrics import FilterMetrics, entries_by_source, split_listen

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def filterset() -> Filterset:
    return load_filterset(ROOT / "config")


def decision(**changes: object) -> Decision:
    fields: dict[str, object] = {
        "decision": "block",
        "category": "adult",
        "action": "unacceptable",
        "incident": "unacceptable",
        "incident_type": "deliberate_offensive",
        "matched": None,
        "rule": "test",
        "group": "pupil",
        "user": "a.pupil",
    }
    fields.update(changes)
    return Decision(**fields)  # type: ignore[arg-type]


def sample(m: FilterMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = m.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


def test_a_block_counts_request_category_and_incident(filterset: Filterset) -> None:
    """One blocked request counts under its group, its category and its incident severity."""
    m = FilterMetrics()
    m.prepare(filterset.policy, list(filterset.settings.sources))
    m.count(filterset.policy, decision(), 0.00002)
    assert sample(m, "schoolgate_requests_total", {"group": "pupil", "decision": "block"}) == 1
    assert sample(m, "schoolgate_blocks_total", {"category": "adult"}) == 1
    assert sample(m, "schoolgate_incidents_total", {"severity": "unacceptable"}) == 1
    assert sample(m, "schoolgate_lookup_seconds_count") == 1
    assert sample(m, "schoolgate_lookup_seconds_bucket", {"le": "2.5e-05"}) == 1


def test_every_configured_series_exists_before_traffic(filterset: Filterset) -> None:
    """prepare() creates each group, category and severity at zero for the dashboards."""
    m = FilterMetrics()
    m.prepare(filterset.policy, list(filterset.settings.sources))
    for group in filterset.policy.groups:
        assert sample(m, "schoolgate_requests_total", {"group": group, "decision": "allow"}) == 0
    for category in filterset.policy.categories:
        assert sample(m, "schoolgate_blocks_total", {"category": category}) == 0
    assert sample(m, "schoolgate_incidents_total", {"severity": "illegal"}) == 0


@pytest.mark.parametrize(
    ("changes", "group", "category"),
    [
        ({"group": "not-in-policy"}, "unknown", "adult"),
        ({"category": None}, "pupil", "none"),
        ({"category": "www.evil.example"}, "pupil", "none"),
    ],
)
def test_values_outside_the_configuration_are_folded(
    filterset: Filterset, changes: dict[str, object], group: str, category: str
) -> None:
    """A group or category the policy does not name never becomes a label of its own."""
    m = FilterMetrics()
    m.count(filterset.policy, decision(**changes), None)
    assert sample(m, "schoolgate_requests_total", {"group": group, "decision": "block"}) == 1
    assert sample(m, "schoolgate_blocks_total", {"category": category}) == 1


def test_no_user_or_host_reaches_the_exposition(filterset: Filterset) -> None:
    """The user and matched entry of a decision appear nowhere in what Prometheus scrapes."""
    m = FilterMetrics()
    m.count(filterset.policy, decision(user="jo.bloggs", rule="adult-demo.example"), 0.001)
    text = generate_latest(m.registry).decode()
    assert "jo.bloggs" not in text
    assert "adult-demo.example" not in text


def test_entries_are_summed_per_configured_source() -> None:
    """List counts are summed under the source that names them; unknown sources are dropped."""
    counts = {"ut1/adult": 5, "ut1/games": 2, "iwf": 3, "other/x": 9}
    assert entries_by_source(counts, ["ut1", "iwf"]) == {"ut1": 7, "iwf": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9180", ("127.0.0.1", 9180)),
        ("[::1]:9", ("::1", 9)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_listen_addresses_split(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT splits into host and port, IPv6 brackets removed."""
    assert split_listen(text) == expected


@pytest.mark.parametrize("text", ["9180", "host:", ":9180", "h:99999", "h:x"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    """Anything but HOST:PORT with a port below 65536 is a ValueError."""
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_listen(text)


def test_the_dashboard_queries_only_exported_series() -> None:
    """Every series the example Grafana dashboard queries is one Schoolgate exports."""
    import json
    import re

    exported = {
        metric.name + suffix
        for metric in FilterMetrics().registry.collect()
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "schoolgate-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"schoolgate_[a-z_]+", target["expr"])
    }
    assert queried
    assert queried <= exported, queried - exported


def test_tunnels_are_counted_by_group_kind_and_action(filterset: Filterset) -> None:
    """A refused SSH tunnel counts under its group; a group the policy lacks is `unknown`."""
    m = FilterMetrics()
    m.prepare(filterset.policy, list(filterset.settings.sources))
    labels = {"group": "pupil", "kind": "tcp", "action": "refuse"}
    assert sample(m, "schoolgate_tunnels_total", labels) == 0
    m.count_tunnel(filterset.policy, "pupil", "tcp", "refuse")
    m.count_tunnel(filterset.policy, "gone-group", "tls", "pass")
    assert sample(m, "schoolgate_tunnels_total", labels) == 1
    unknown = {"group": "unknown", "kind": "tls", "action": "pass"}
    assert sample(m, "schoolgate_tunnels_total", unknown) == 1


def test_the_alert_rules_query_only_exported_series() -> None:
    """The Grafana alert rules watch the store writer's series, each one Schoolgate exports."""
    import re

    import yaml

    exported = {
        metric.name + suffix
        for metric in FilterMetrics().registry.collect()
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    rules = yaml.safe_load((ROOT / "deploy" / "grafana" / "schoolgate-alerts.yaml").read_text())
    queried = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for query in rule["data"]
        for name in re.findall(r"schoolgate_[a-z_]+", query["model"].get("expr", ""))
    }
    assert {
        "schoolgate_store_writer_up",
        "schoolgate_store_oldest_unapplied_seconds",
        "schoolgate_store_events_dropped_total",
    } <= queried
    assert queried <= exported, queried - exported
