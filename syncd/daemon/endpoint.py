"""The daemon's /metrics and /healthz endpoint, and the thread that polls queue depths for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from syncd.broker.statistics import queue_statistics
from syncd.config import Config
from syncd.errors import BrokerUnavailable
from syncd.telemetry.metrics import serve
from syncd.telemetry.stats import Stats

log = logging.getLogger("syncd")


@dataclass
class MetricsEndpoint:
    """The /metrics and /healthz server, and the thread that polls queue depths for it."""

    server: WSGIServer
    poller: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # the listening socket, so a restart can bind it at once
        self.poller.join(10)


def serve_metrics(
    config: Config,
    queues: Callable[[], list[str]],
    stats: Stats,
    health: Callable[[], tuple[bool, str]],
    stopping: threading.Event,
) -> MetricsEndpoint | None:
    """Serve ``metrics.listen`` (None if not configured); ``queues()`` are the queues whose
    depth is polled, ``health()`` answers /healthz."""
    listen = config.metrics.listen
    if not listen:
        return None
    server = serve(listen, stats.metrics, health)
    poller = threading.Thread(
        target=_poll_queue_depths,
        args=(config, queues, stats, stopping),
        name="queue-depths",
        daemon=True,
    )
    poller.start()
    return MetricsEndpoint(server, poller)


def _poll_queue_depths(
    config: Config, queues: Callable[[], list[str]], stats: Stats, stopping: threading.Event
) -> None:
    """``syncd_queue_depth{queue}`` from the broker's statistics plugin, now and every 15 s.

    A failure is logged when it starts and when it passes, not every 15 s: the apply loop
    already says when the broker is down.
    """
    failing = False
    while not stopping.is_set():
        try:
            found = queue_statistics(config.broker, queues(), timeout_s=5.0)
        except BrokerUnavailable as exc:
            if not failing:
                log.warning("queue depths unavailable (syncd_queue_depth is stale): %s", exc)
            failing, found = True, {}
        else:
            if failing:
                log.info("queue depths available again")
            failing = False
        for queue, numbers in found.items():
            stats.metrics.queue_depth.labels(queue).set(numbers.depth)
        stopping.wait(15.0)
