"""Prometheus metrics and the /healthz endpoint (prometheus_client, served by wsgiref).

``Metrics`` holds the instruments in a registry of its own; ``serve`` answers ``/healthz``
(200 while connected and making progress, 503 otherwise) and everything else with the
metrics, from a daemon thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from syncd.telemetry.instance import instance_name

log = logging.getLogger(__name__)

# Seconds; a batch of 100 single events takes ~20 ms here, a large array batch ~0.5 s.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Events per source transaction (transactions: atomic): transfers, orders, bulk loads.
TRANSACTION_BUCKETS = (1, 2, 5, 10, 50, 100, 1000, 10_000, 100_000, 1_000_000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.applied = Counter(
            "syncd_events_applied", "Events applied to a target", ["mapping"], registry=r
        )
        self.skipped = Counter(
            "syncd_events_skipped",
            "Events that changed nothing: duplicate (position already applied) or stale (older); "
            "and, under mapping '-', Debezium messages that change no row (tombstone, heartbeat, "
            "transaction, message)",
            ["mapping", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "syncd_events_dead_lettered",
            "Events and messages sent to the dead-letter queue",
            ["mapping", "error_class"],
            registry=r,
        )
        self.retries = Counter("syncd_retries", "Retries of a failed apply", registry=r)
        self.captured = Counter(
            "syncd_captured_events",
            "Events captured at a source and confirmed by the broker",
            ["source"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "syncd_batch_seconds",
            "Time to apply and settle one batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.transactions_applied = Counter(
            "syncd_transactions_applied",
            "Whole source transactions applied (sources with transactions: atomic)",
            registry=r,
        )
        self.transaction_events = Histogram(
            "syncd_transaction_events",
            "Events per whole source transaction applied",
            buckets=TRANSACTION_BUCKETS,
            registry=r,
        )
        self.transaction_in_hand = Gauge(
            "syncd_transaction_in_hand_events",
            "Events of the largest source transaction in the batch being applied (or last applied)",
            registry=r,
        )
        self.broker_connected = Gauge(
            "syncd_broker_connected", "1 while connected to the broker", registry=r
        )
        self.queue_depth = Gauge(
            "syncd_queue_depth",
            "Messages waiting on a queue (broker statistics)",
            ["queue"],
            registry=r,
        )
        # Which daemon these are, for dashboards over many (join on the scrape's labels).
        self.instance_info = Gauge(
            "syncd_instance_info",
            "1, labelled with this daemon's instance name ($SYNCD_INSTANCE, or host-pid)",
            ["name"],
            registry=r,
        )
        self.instance_info.labels(instance_name()).set(1)

    def schema_changes_from(self, counts: Callable[[], dict[tuple[str, str, str], int]]) -> None:
        """``syncd_schema_changes_total{database, table, change}``: the schema changes syncd
        made (``change``: add_column), as ``counts`` tells them when scraped."""
        self.registry.register(_SchemaChanges(counts))

    def lag_from(self, source_ts_ms: Callable[[], dict[str, int]]) -> None:
        """``syncd_lag_seconds{mapping}``: now minus the source time of the newest applied
        event, computed when scraped (so it grows while nothing arrives)."""
        self.registry.register(_LagCollector(source_ts_ms))


class _LagCollector(Collector):
    def __init__(self, source_ts_ms: Callable[[], dict[str, int]]):
        self._source_ts_ms = source_ts_ms

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "syncd_lag_seconds",
            "Now minus the source time of the newest event applied, per mapping",
            labels=["mapping"],
        )
        now = time.time()
        for mapping, ts_ms in sorted(self._source_ts_ms().items()):
            family.add_metric([mapping], max(0.0, now - ts_ms / 1000))
        yield family


class _SchemaChanges(Collector):
    def __init__(self, counts: Callable[[], dict[tuple[str, str, str], int]]):
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "syncd_schema_changes",
            "Schema changes syncd made to target tables (on_new_column: add)",
            labels=["database", "table", "change"],
        )
        for labels, count in sorted(self._counts().items()):
            family.add_metric(list(labels), count)
        yield family


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


def serve(listen: str, metrics: Metrics, health: Callable[[], tuple[bool, str]]) -> WSGIServer:
    """Serve /metrics (any path) and /healthz on ``listen`` ("host:port") from a thread."""
    host, _, port = listen.rpartition(":")
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            healthy, reason = health()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return iter([f"{'ok' if healthy else 'unhealthy'}: {reason}\n".encode()])
        return iter(metrics_app(environ, start_response))

    server = make_server(
        host.strip("[]"), int(port), app, server_class=_Server, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s/metrics, health on /healthz", listen)
    return server
