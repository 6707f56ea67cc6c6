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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from wsgiref.simple_server import WSGIServer

from syncd.apply.sql import SqlApplier
from syncd.backoff import Backoff
from syncd.broker.statistics import queue_statistics
from syncd.broker.stomp import StompBroker
from syncd.capture.runner import CaptureRunner
from syncd.config import Config, SourceConfig, load_config
from syncd.daemon.notify import Notifier
from syncd.errors import (
    BrokerUnavailable,
    ConfigError,
    PermanentApplyError,
    Problem,
    TargetUnavailable,
)
from syncd.mapping import Mapping, load_mappings
from syncd.pipeline.ledger import DeliveryLedger
from syncd.pipeline.loop import ApplyLoop
from syncd.routing import Router
from syncd.telemetry.metrics import serve
from syncd.telemetry.progress import Progress
from syncd.telemetry.stats import Stats

log = logging.getLogger("syncd")

APPLY = "the apply loop"  # the apply part's name; each source's capture is "capture NAME"


def build_appliers(
    config: Config, mappings: Sequence[Mapping], create: bool = True
) -> dict[str, SqlApplier]:
    """One applier per target database that a mapping uses, each checked against its tables.

    Raises ``ConfigError`` with every problem found, or ``TargetUnavailable`` if a database
    cannot be reached.
    """
    appliers: dict[str, SqlApplier] = {}
    problems: list[Problem] = []
    try:
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
            raise ConfigError(problems)
    except BaseException:
        # Whatever stops the start (bad tables, a database still down, a signal), the appliers
        # made so far go: each holds an engine and a deadline thread, and the caller retries.
        for applier in appliers.values():
            applier.close()
        raise
    return appliers


def router_for(mappings: Sequence[Mapping], appliers: dict[str, SqlApplier]) -> Router:
    """A router that checks each row against its target table, as the applier reflected it."""
    return Router(
        mappings,
        lambda m: appliers[m.target_database].target_columns(m),
        lambda m: appliers[m.target_database].target_limits(m),
        lambda m, key, row: appliers[m.target_database].check_row(m, key, row),
    )


class Supervision:
    """Where the parts report progress: systemd's notify socket, and the /healthz answer.

    Each part — the apply loop, each source's capture — reports through its own view
    (:meth:`part`, a ``Progress``). READY=1 goes out once every part is ready; STATUS joins
    the parts' lines; the watchdog is fed only while every part goes round, so one wedged part
    starves it and systemd restarts the daemon.
    """

    def __init__(
        self,
        notifier: Notifier,
        parts: Sequence[str],
        stale_after_s: float,
        broker_connected: Callable[[], bool] | None = None,
    ):
        self.notifier = notifier
        self._broker_connected = broker_connected  # the apply loop's connection, if it runs
        self._stale_after_s = stale_after_s
        # A part is fresh for the watchdog if it went round within one WatchdogSec (pings go
        # out at half of it): a part wedged longer stops the pings.
        interval_s = notifier.watchdog_interval_s
        self._fresh_s = 2 * interval_s if interval_s is not None else stale_after_s
        now = time.monotonic()
        self._parts = {name: _PartState(last_progress=now) for name in parts}
        self._lock = threading.Lock()
        self._ready_sent = False

    def part(self, name: str) -> _PartProgress:
        return _PartProgress(self, name)

    def ready(self, name: str, status: str) -> None:
        with self._lock:
            self._parts[name].ready = True
            self._parts[name].status = status
            if self._ready_sent or not all(p.ready for p in self._parts.values()):
                return
            self._ready_sent = True
            self.notifier.ready(self._status_line())

    def status(self, name: str, text: str) -> None:
        with self._lock:
            self._parts[name].status = text
            self.notifier.status(self._status_line())

    def alive(self, name: str) -> None:
        with self._lock:
            part = self._parts[name]
            part.last_progress = time.monotonic()
            part.waiting_for = ""
            self._feed_watchdog()

    def waiting(self, name: str, status: str) -> None:
        """Waiting out an outage: alive (not wedged), and saying what for."""
        with self._lock:
            part = self._parts[name]
            part.last_progress = time.monotonic()
            part.waiting_for = part.status = status
            self.notifier.status(self._status_line())
            self._feed_watchdog()

    def health(self) -> tuple[bool, str]:
        """Healthy: connected to the broker, and every part went round recently."""
        if self._broker_connected is not None and not self._broker_connected():
            return False, "not connected to the broker"
        now = time.monotonic()
        with self._lock:
            for name, part in self._parts.items():
                if part.waiting_for:
                    return False, part.waiting_for
                silent_s = now - part.last_progress
                if silent_s > self._stale_after_s:
                    return False, f"{name} has not gone round for {silent_s:.0f} s"
        return True, "applying" if APPLY in self._parts else "capturing"

    def _feed_watchdog(self) -> None:
        now = time.monotonic()
        if all(now - p.last_progress <= self._fresh_s for p in self._parts.values()):
            self.notifier.alive()

    def _status_line(self) -> str:
        return "; ".join(p.status for p in self._parts.values() if p.status)


@dataclass
class _PartState:
    last_progress: float
    ready: bool = False
    status: str = ""
    waiting_for: str = ""


class _PartProgress:
    """One part's ``Progress``: what the apply loop and each capture runner report to."""

    def __init__(self, supervision: Supervision, name: str):
        self._supervision = supervision
        self._name = name

    def ready(self, status: str) -> None:
        self._supervision.ready(self._name, status)

    def status(self, text: str) -> None:
        self._supervision.status(self._name, text)

    def alive(self) -> None:
        self._supervision.alive(self._name)

    def waiting(self, status: str) -> None:
        self._supervision.waiting(self._name, status)


def _wait_for_targets(
    config: Config, mappings: Sequence[Mapping], stopping: threading.Event, notifier: Notifier
) -> dict[str, SqlApplier] | None:
    """Build the appliers, waiting out databases that are not up yet (a boot-order race)."""
    waits = Backoff(config.retry)
    while not stopping.is_set():
        try:
            return build_appliers(config, mappings)
        except TargetUnavailable as exc:
            delay_s = waits.next_s()
            log.warning("target database unavailable, retrying in %.1f s: %s", delay_s, exc)
            notifier.status(f"waiting for the target database: {exc}")
            notifier.alive()
            stopping.wait(delay_s)
    return None


class Reloader:
    """SIGHUP: re-read config.yaml and the mappings; if valid, swap them in between batches.

    If anything is wrong the daemon keeps running on what it had, and says so: every problem
    in the log with its file and line (as `syncd check` prints them), and in systemd's STATUS.
    Broker settings and sources take effect at the next restart.
    """

    def __init__(
        self,
        config: Config,
        appliers: dict[str, SqlApplier],
        broker: StompBroker,
        progress: Progress,
        requested: threading.Event,
    ):
        self.config = config
        self.appliers = appliers
        self.requested = requested
        self._broker = broker
        self._progress = progress

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
            self._progress.status(
                f"reload failed ({len(exc.problems)} problems, see the journal); "
                "running on the previous configuration"
            )
            return
        except TargetUnavailable as exc:
            log.error("reload failed: %s; running on the previous configuration", exc)
            self._progress.status(f"reload failed: {exc}")
            return
        if config.broker != self.config.broker:
            log.warning("reload: broker settings changed; they take effect at the next restart")
        if config.sources != self.config.sources:
            log.warning("reload: sources changed; they take effect at the next restart")
        router = router_for(mappings, appliers)
        loop.swap(router, dict(appliers), config.apply)
        self._resubscribe({config.queue_for(s) for s in router.systems})
        old, self.appliers, self.config = self.appliers, appliers, config
        for applier in old.values():
            applier.close()
        log.info("reloaded: %d mappings from %s", len(mappings), config.mappings_dir)

    def _resubscribe(self, wanted: set[str]) -> None:
        """Subscribe to exactly ``wanted``, also when the connection fails on the way.

        The broker object records each change before it sends it, and a reconnect subscribes
        to what it records: a connection lost here only defers the rest to the reconnect the
        apply loop makes next — it must not end the daemon.
        """
        current = set(self._broker.destinations)
        changes = [(self._broker.subscribe, d) for d in sorted(wanted - current)]
        changes += [(self._broker.unsubscribe, d) for d in sorted(current - wanted)]
        for change, destination in changes:
            try:
                change(destination)
            except BrokerUnavailable as exc:
                log.warning("reload: %s; the reconnect will subscribe as configured", exc)


class _ApplyPart:
    """The apply loop and what it holds: targets, its broker connection and the ledger."""

    def __init__(self, config: Config, mappings: list[Mapping], appliers: dict[str, SqlApplier]):
        self.config = config
        self.mappings = mappings
        self.appliers = appliers
        self.ledger = DeliveryLedger(config.state_dir / "deliveries.db")
        self.router = router_for(mappings, appliers)
        self.broker = StompBroker(config.broker)
        for system in self.router.systems:
            self.broker.subscribe(config.queue_for(system))
        self.reloader: Reloader | None = None

    @classmethod
    def prepare(
        cls, config: Config, stopping: threading.Event, notifier: Notifier
    ) -> _ApplyPart | None:
        """Mappings and targets checked (waiting for the targets); None if stopped meanwhile."""
        mappings = load_mappings(config.mappings_dir, list(config.databases))
        appliers = _wait_for_targets(config, mappings, stopping, notifier)
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
    metrics = _serve_metrics(config, apply, sources, stats, supervision, stopping)
    between = None if apply else _reload_notice(reload_requested)
    try:
        _supervise(workers, stopping, notifier, between)
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


def _reload_notice(requested: threading.Event) -> Callable[[], None]:
    """SIGHUP without an apply loop: there is nothing to reload, and the log says so."""

    def notice() -> None:
        if requested.is_set():
            requested.clear()
            log.warning("reload requested: sources change only at the next restart")

    return notice


@dataclass
class _MetricsEndpoint:
    """The /metrics and /healthz server, and the thread that polls queue depths for it."""

    server: WSGIServer
    poller: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # the listening socket, so a restart can bind it at once
        self.poller.join(10)


def _serve_metrics(
    config: Config,
    apply: _ApplyPart | None,
    sources: Sequence[SourceConfig],
    stats: Stats,
    supervision: Supervision,
    stopping: threading.Event,
) -> _MetricsEndpoint | None:
    listen = config.metrics.listen
    if not listen:
        return None
    server = serve(listen, stats.metrics, supervision.health)

    def queues() -> list[str]:
        applied = [*apply.broker.destinations, config.broker.dead_letter_queue] if apply else []
        return applied + [source.queue for source in sources]

    poller = threading.Thread(
        target=_poll_queue_depths,
        args=(config, queues, stats, stopping),
        name="queue-depths",
        daemon=True,
    )
    poller.start()
    return _MetricsEndpoint(server, poller)


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


def _supervise(
    workers: dict[str, Callable[[threading.Event], None]],
    stopping: threading.Event,
    notifier: Notifier,
    between: Callable[[], None] | None = None,
) -> None:
    """Run each part in its own thread; this (main) thread stays free for signals.

    A thread blocked in a database driver's C code cannot run Python signal handlers, so no
    part may run on the main thread: here a second SIGTERM exits at once even while a statement
    hangs, and systemd hears STOPPING=1 as soon as the first one arrives. A part that fails (or
    ends unasked) stops the others, each finishing its round, and the daemon then dies of that
    failure: a non-zero exit, so systemd restarts it (except for exit code 2).
    """
    failures: list[BaseException] = []

    def work(name: str, part: Callable[[threading.Event], None]) -> None:
        try:
            part(stopping)
            if not stopping.is_set():
                raise RuntimeError(f"{name} ended without being asked to")
        except BaseException as exc:  # handed to the main thread, which dies of it
            failures.append(exc)
            stopping.set()

    threads = [
        threading.Thread(target=work, args=(name, part), name=name)
        for name, part in workers.items()
    ]
    for thread in threads:
        thread.start()
    told = False
    while running := [thread for thread in threads if thread.is_alive()]:
        running[0].join(0.2)
        if between is not None:
            between()
        if stopping.is_set() and not told:
            told = True
            if failures:
                log.error("a part failed (%s): stopping the others", failures[0])
            else:
                log.info("stop requested: finishing the batch in hand")
            notifier.stopping()
    for also in failures[1:]:  # the daemon dies of the first; the others are said here
        log.error("another part failed too: %s", also, exc_info=also)
    if failures:
        raise failures[0]
    if not told:
        notifier.stopping()


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


__all__ = ["build_appliers", "run"]
