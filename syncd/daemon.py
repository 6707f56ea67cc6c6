"""`syncd run`: wire config, mappings, appliers and the broker together, and run the loop."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType

from syncd.apply.sql import SqlApplier
from syncd.broker.statistics import queue_statistics
from syncd.broker.stomp import StompBroker
from syncd.config import Config, load_config
from syncd.consumer import ApplyLoop
from syncd.errors import (
    BrokerUnavailable,
    ConfigError,
    PermanentApplyError,
    Problem,
    TargetUnavailable,
)
from syncd.ledger import DeliveryLedger
from syncd.mapping import Mapping, load_mappings
from syncd.metrics import serve
from syncd.notify import Notifier
from syncd.routing import Router
from syncd.stats import Stats

log = logging.getLogger("syncd")


def build_appliers(
    config: Config, mappings: Sequence[Mapping], create: bool = True
) -> dict[str, SqlApplier]:
    """One applier per target database that a mapping uses, each checked against its tables.

    Raises ``ConfigError`` with every problem found, or ``TargetUnavailable`` if a database
    cannot be reached.
    """
    appliers: dict[str, SqlApplier] = {}
    problems: list[Problem] = []
    for name, database in config.databases.items():
        used = [m for m in mappings if m.target_database == name]
        if not used:
            continue
        try:
            applier = SqlApplier(
                name, database.url, used, config.apply.positions_table, config.apply.timeout_s
            )
        except PermanentApplyError as exc:
            problems.append(Problem(str(config.path), None, f"databases.{name}: {exc}"))
            continue
        appliers[name] = applier
        try:
            problems += applier.prepare(create=create)
        except PermanentApplyError as exc:
            problems.append(Problem(str(config.path), None, f"databases.{name}: {exc}"))
    if problems:
        for applier in appliers.values():
            applier.close()
        raise ConfigError(problems)
    return appliers


class Supervision:
    """Where the loop reports progress: systemd's notify socket, and the /healthz answer."""

    def __init__(self, notifier: Notifier, broker: StompBroker, stale_after_s: float):
        self.notifier = notifier
        self._broker = broker
        self._stale_after_s = stale_after_s
        self._last_progress = time.monotonic()
        self._waiting_for = ""

    def ready(self, status: str) -> None:
        self.notifier.ready(status)

    def status(self, text: str) -> None:
        self.notifier.status(text)

    def alive(self) -> None:
        self._last_progress = time.monotonic()
        self._waiting_for = ""
        self.notifier.alive()

    def waiting(self, status: str) -> None:
        self._waiting_for = status
        self.notifier.waiting(status)

    def health(self) -> tuple[bool, str]:
        """Healthy: connected to the broker, and the apply loop went round recently."""
        if not self._broker.connected:
            return False, "not connected to the broker"
        if self._waiting_for:
            return False, self._waiting_for
        silent_s = time.monotonic() - self._last_progress
        if silent_s > self._stale_after_s:
            return False, f"the apply loop has not gone round for {silent_s:.0f} s"
        return True, "applying"


def _wait_for_targets(
    config: Config, mappings: Sequence[Mapping], stopping: threading.Event, notifier: Notifier
) -> dict[str, SqlApplier] | None:
    """Build the appliers, waiting out databases that are not up yet (a boot-order race)."""
    delay_s = config.retry.initial_backoff_ms / 1000
    while not stopping.is_set():
        try:
            return build_appliers(config, mappings)
        except TargetUnavailable as exc:
            log.warning("target database unavailable, retrying in %.1f s: %s", delay_s, exc)
            notifier.status(f"waiting for the target database: {exc}")
            notifier.alive()
            stopping.wait(delay_s)
            delay_s = min(delay_s * 2, config.retry.max_backoff_ms / 1000)
    return None


class Reloader:
    """SIGHUP: re-read config.yaml and the mappings; if valid, swap them in between batches.

    If anything is wrong the daemon keeps running on what it had, and says so: every problem
    in the log with its file and line (as `syncd check` prints them), and in systemd's STATUS.
    Broker settings take effect at the next restart.
    """

    def __init__(
        self,
        config: Config,
        appliers: dict[str, SqlApplier],
        broker: StompBroker,
        notifier: Notifier,
    ):
        self.config = config
        self.appliers = appliers
        self.requested = threading.Event()
        self._broker = broker
        self._notifier = notifier

    def __call__(self, loop: ApplyLoop) -> None:
        if not self.requested.is_set():
            return
        self.requested.clear()
        log.info("reload requested: reading %s", self.config.path)
        try:
            config = load_config(self.config.path)
            mappings = load_mappings(config.mappings_dir, list(config.databases))
            appliers = build_appliers(config, mappings)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload failed: %s", problem)
            self._notifier.status(
                f"reload failed ({len(exc.problems)} problems, see the journal); "
                "running on the previous configuration"
            )
            return
        except TargetUnavailable as exc:
            log.error("reload failed: %s; running on the previous configuration", exc)
            self._notifier.status(f"reload failed: {exc}")
            return
        if config.broker != self.config.broker:
            log.warning("reload: broker settings changed; they take effect at the next restart")
        router = Router(mappings, lambda m: appliers[m.target_database].target_columns(m))
        loop.swap(router, dict(appliers), config.apply)
        self._resubscribe({config.queue_for(s) for s in router.systems})
        old, self.appliers, self.config = self.appliers, appliers, config
        for applier in old.values():
            applier.close()
        log.info("reloaded: %d mappings from %s", len(mappings), config.mappings_dir)

    def _resubscribe(self, wanted: set[str]) -> None:
        current = set(self._broker.destinations)
        for destination in sorted(wanted - current):
            self._broker.subscribe(destination)
        for destination in sorted(current - wanted):
            self._broker.unsubscribe(destination)


def run(config: Config, stopping: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT (or ``stopping`` is set). Raises ``ConfigError`` early."""
    stopping = stopping or threading.Event()
    reload_early = threading.Event()  # a SIGHUP before the loop runs: nothing to reload yet
    _install_signal_handlers(stopping, reload_early)
    notifier = Notifier()
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    ledger = DeliveryLedger(config.state_dir / "deliveries.db")
    appliers = _wait_for_targets(config, mappings, stopping, notifier)
    if appliers is None:
        ledger.close()
        return
    router = Router(mappings, lambda m: appliers[m.target_database].target_columns(m))
    broker = StompBroker(config.broker)
    for system in router.systems:
        broker.subscribe(config.queue_for(system))
    supervision = Supervision(notifier, broker, config.apply.timeout_s + 30)
    stats = Stats()
    stats.metrics.broker_connected.set_function(lambda: float(broker.connected))
    listen = config.metrics.listen
    metrics_server = serve(listen, stats.metrics, supervision.health) if listen else None
    if listen:
        threading.Thread(
            target=_poll_queue_depths,
            args=(config, broker, stats, stopping),
            name="queue-depths",
            daemon=True,
        ).start()
    reloader = Reloader(config, appliers, broker, notifier)
    if reload_early.is_set():
        reloader.requested.set()
    _install_signal_handlers(stopping, reloader.requested)
    loop = ApplyLoop(
        broker,
        router,
        dict(appliers),
        config.apply,
        config.retry,
        config.broker.dead_letter_queue,
        stats,
        ledger,
        supervision,
        between_batches=lambda: reloader(loop),
    )
    log.info(
        "syncd running: %d mappings, queues %s",
        len(mappings),
        ", ".join(config.queue_for(s) for s in router.systems),
    )
    try:
        _supervise(loop, stopping, notifier)
    finally:
        # Shutdown order: the loop has finished and settled the batch in hand; disconnecting
        # returns whatever was delivered but not yet taken to the broker (it is redelivered);
        # then the databases and the ledger close.
        if metrics_server is not None:
            metrics_server.shutdown()
        broker.close()
        for applier in reloader.appliers.values():
            applier.close()
        ledger.close()
        log.info("syncd stopped: %s", stats.summary())


def _poll_queue_depths(
    config: Config, broker: StompBroker, stats: Stats, stopping: threading.Event
) -> None:
    """``syncd_queue_depth{queue}`` from the broker's statistics plugin, now and every 15 s."""
    while not stopping.is_set():
        if not broker.connected:
            stopping.wait(1.0)
            continue
        queues = [*broker.destinations, config.broker.dead_letter_queue]
        try:
            found = queue_statistics(config.broker, queues, timeout_s=5.0)
        except BrokerUnavailable as exc:
            log.debug("queue depths unavailable: %s", exc)
            found = {}
        for queue, numbers in found.items():
            stats.metrics.queue_depth.labels(queue).set(numbers.depth)
        stopping.wait(15.0)


def _supervise(loop: ApplyLoop, stopping: threading.Event, notifier: Notifier) -> None:
    """Run the apply loop in its own thread; this (main) thread stays free for signals.

    A thread blocked in a database driver's C code cannot run Python signal handlers, so the
    loop must not run on the main thread: here a second SIGTERM exits at once even while a
    statement hangs, and systemd hears STOPPING=1 as soon as the first one arrives.
    """
    failure: list[BaseException] = []

    def work() -> None:
        try:
            loop.run(stopping)
        except BaseException as exc:  # handed to the main thread, which dies of it
            failure.append(exc)

    worker = threading.Thread(target=work, name="apply-loop")
    worker.start()
    told = False
    while worker.is_alive():
        worker.join(0.2)
        if stopping.is_set() and not told:
            told = True
            log.info("stop requested: finishing the batch in hand")
            notifier.stopping()
    if failure:
        raise failure[0]
    if not told:
        notifier.stopping()


def _install_signal_handlers(stopping: threading.Event, reload: threading.Event) -> None:
    """Signals only set flags; the loop acts on them between batches.

    SIGTERM/SIGINT: finish the batch in hand, then stop; a second one exits at once (what was
    not acknowledged is redelivered). SIGHUP: reload config.yaml and the mappings.
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


__all__ = ["build_appliers", "run"]
