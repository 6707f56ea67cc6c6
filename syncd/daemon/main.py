"""`syncd run`: wire config, mappings, appliers, captures and the broker together, and run.

The daemon runs up to two kinds of parts, each on its own thread: the apply loop (queues to
target databases) and one capture runner per configured source (source database to its
queue). ``syncd run --only apply|capture`` runs one kind. One part failing stops them all.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from syncd.apply.sql import SqlApplier
from syncd.broker.stomp import StompBroker
from syncd.capture.runner import CaptureRunner
from syncd.config import Config, SourceConfig
from syncd.daemon.endpoint import serve_metrics
from syncd.daemon.notify import Notifier
from syncd.daemon.reload import Reloader, reload_notice
from syncd.daemon.supervision import APPLY, Supervision, supervise
from syncd.daemon.targets import router_for, wait_for_targets
from syncd.errors import ConfigError, Problem
from syncd.mapping import Mapping, load_mappings
from syncd.pipeline.ledger import DeliveryLedger
from syncd.pipeline.loop import ApplyLoop
from syncd.telemetry.instance import instance_name
from syncd.telemetry.progress import Progress
from syncd.telemetry.stats import Stats

log = logging.getLogger("syncd")


class _ApplyPart:
    """The apply loop and what it holds: targets, its broker connection and the ledger."""

    def __init__(self, config: Config, mappings: list[Mapping], appliers: dict[str, SqlApplier]):
        self.config = config
        self.mappings = mappings
        self.appliers = appliers
        self.ledger = DeliveryLedger(config.state_dir / "deliveries.db")
        self.router = router_for(mappings, appliers)
        self.broker = StompBroker(config.broker, exclusive=config.exclusive_queues())
        for system in self.router.systems:
            self.broker.subscribe(config.queue_for(system))
        self.reloader: Reloader | None = None

    @classmethod
    def prepare(
        cls, config: Config, stopping: threading.Event, notifier: Notifier
    ) -> _ApplyPart | None:
        """Mappings and targets checked (waiting for the targets); None if stopped meanwhile."""
        mappings = load_mappings(config.mappings_dir, list(config.databases))
        appliers = wait_for_targets(config, mappings, stopping, notifier)
        return cls(config, mappings, appliers) if appliers is not None else None

    def loop(
        self, stats: Stats, progress: Progress, reload_requested: threading.Event
    ) -> ApplyLoop:
        reloader = Reloader(self.config, self.appliers, self.broker, progress, reload_requested)
        self.reloader = reloader
        loop = ApplyLoop(
            self.broker,
            self.router,
            dict(self.appliers),
            self.config.apply,
            self.config.retry,
            self.config.broker.dead_letter_queue,
            stats,
            self.ledger,
            progress,
            between_batches=lambda: reloader(loop),
        )
        log.info(
            "syncd applying: %d mappings, queues %s",
            len(self.mappings),
            ", ".join(self.config.queue_for(s) for s in self.router.systems),
            extra={"context": {"instance": instance_name()}},
        )
        return loop

    def close(self) -> None:
        # Disconnecting returns whatever was delivered but not yet taken to the broker (it is
        # redelivered); then the databases and the ledger close.
        self.broker.close()
        reloader = self.reloader
        for applier in (reloader.appliers if reloader else self.appliers).values():
            applier.close()
        self.ledger.close()


def run(config: Config, stopping: threading.Event | None = None, only: str | None = None) -> None:
    """Run until SIGTERM or SIGINT (or ``stopping`` is set): the apply loop, and a capture
    runner per configured source; ``only`` ("apply" or "capture") runs just those.

    Raises ``ConfigError`` early, and ``CaptureError`` when a source's capture needs a human
    (the other parts stop first, each finishing its round).
    """
    stopping = stopping or threading.Event()
    reload_requested = threading.Event()  # SIGHUP; the apply loop acts on it between batches
    _install_signal_handlers(stopping, reload_requested)
    sources, applying = _parts(config, only)
    notifier = Notifier()
    apply = _ApplyPart.prepare(config, stopping, notifier) if applying else None
    if applying and apply is None:
        return  # stopped while waiting for the targets
    stats = Stats()
    names = ([APPLY] if apply else []) + [f"capture {source.name}" for source in sources]
    broker = apply.broker if apply else None
    supervision = Supervision(
        notifier, names, config.apply.timeout_s + 30, (lambda: broker.connected) if broker else None
    )
    workers: dict[str, Callable[[threading.Event], None]] = {}
    if apply is not None:
        workers["apply-loop"] = apply.loop(stats, supervision.part(APPLY), reload_requested).run
    runners = [
        CaptureRunner(source, config, stats, supervision.part(f"capture {source.name}"))
        for source in sources
    ]
    workers.update({f"capture-{runner.source.name}": runner.run for runner in runners})
    stats.metrics.broker_connected.set_function(
        lambda: float(broker.connected if broker else all(r.broker_connected for r in runners))
    )

    def queues() -> list[str]:
        applied = [*apply.broker.destinations, config.broker.dead_letter_queue] if apply else []
        return applied + [source.queue for source in sources]

    metrics = serve_metrics(config, queues, stats, supervision.health, stopping)
    between = None if apply else reload_notice(reload_requested)
    try:
        supervise(workers, stopping, notifier, between)
    finally:
        # Shutdown order: every part has finished its round — the apply loop settled the batch
        # in hand, each capture published and confirmed its batch (or left it for the source
        # to send again) and closed its connections; then the metrics endpoint goes (its
        # queue-depth poller, woken by `stopping`, ends with it), and the apply part lets go
        # of the broker, the targets and the ledger.
        stopping.set()
        if metrics is not None:
            metrics.close()
        if apply is not None:
            apply.close()
        log.info("syncd stopped: %s", stats.summary())


def _parts(config: Config, only: str | None) -> tuple[list[SourceConfig], bool]:
    """The sources to capture and whether to apply: both, unless ``only`` says one of them.

    Without target databases (a capture-only config) there is nothing to apply.
    """
    sources = list(config.sources.values()) if only != "apply" else []
    applying = only != "capture" and bool(config.databases)
    file = str(config.path)
    if only == "capture" and not sources:
        message = "sources: none configured; `syncd run --only capture` captures the sources"
        raise ConfigError([Problem(file, None, message + " named under sources:")])
    if only == "apply" and not applying:
        message = "databases: none configured; `syncd run --only apply` needs a target database"
        raise ConfigError([Problem(file, None, message)])
    if not applying and only is None:
        log.info("no target databases configured: capturing only")
    return sources, applying


def _install_signal_handlers(stopping: threading.Event, reload: threading.Event) -> None:
    """Signals only set flags; the loop acts on them between batches.

    SIGTERM/SIGINT: finish the batch in hand (captures: publish and confirm it), then stop; a
    second one exits at once (what was not acknowledged is redelivered, what was not confirmed
    is captured again). SIGHUP: reload config.yaml and the mappings (sources: at restart only).
    """

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            os._exit(128 + signum)
        stopping.set()

    def request_reload(_signum: int, _frame: FrameType | None) -> None:
        reload.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGHUP, request_reload)


__all__ = ["run"]
