"""grafana/syncd.json asks only for metrics that /metrics really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from syncd.telemetry.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "syncd.json"
METRIC_NAME = re.compile(r"\bsyncd_[a-z_]+\b")


def exported_names() -> set[str]:
    """Every sample name the daemon's registry exposes (counters' _total, histograms' _bucket…)."""
    metrics = Metrics()
    metrics.lag_from(lambda: {"customers": 0})
    metrics.applied.labels("customers")
    metrics.skipped.labels("customers", "duplicate")
    metrics.dead_lettered.labels("customers", "rejected")
    metrics.captured.labels("crm")
    metrics.queue_depth.labels("/queue/syncd.crm")
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def queries(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str)]
        return found + [q for v in node.values() for q in queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in queries(v)]
    return []


def test_every_query_names_exported_metrics_only() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    named = {name for query in queries(dashboard) for name in METRIC_NAME.findall(query)}
    assert named, "the dashboard queries no syncd metric"
    assert named - exported_names() == set()


def test_the_dashboard_covers_what_sysadmins_watch() -> None:
    named = " ".join(queries(json.loads(DASHBOARD.read_text())))
    for metric in (
        "syncd_events_applied_total",
        "syncd_lag_seconds",
        "syncd_events_dead_lettered_total",
        "syncd_retries_total",
        "syncd_batch_seconds_bucket",
        "syncd_queue_depth",
        "syncd_broker_connected",
        "syncd_instance_info",
    ):
        assert metric in named, metric


def test_a_misspelt_metric_would_be_caught() -> None:
    assert "syncd_events_applied" not in exported_names()  # a counter exports _total
    assert "syncd_events_applied_total" in exported_names()
