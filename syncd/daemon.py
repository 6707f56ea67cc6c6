"""`syncd run`: wire config, mappings, appliers and the broker together, and run the loop."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from syncd.apply.sql import SqlApplier
from syncd.broker.stomp import StompBroker
from syncd.config import Config
from syncd.consumer import ApplyLoop
from syncd.errors import ConfigError, PermanentApplyError, Problem, TargetUnavailable
from syncd.ledger import DeliveryLedger
from syncd.mapping import Mapping, load_mappings
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


def run(config: Config, stopping: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT (or ``stopping`` is set). Raises ``ConfigError`` early."""
    stopping = stopping or threading.Event()
    notifier = Notifier()
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    ledger = DeliveryLedger(config.state_dir / "deliveries.db")
    _install_signal_handlers(stopping)
    appliers = _wait_for_targets(config, mappings, stopping, notifier)
    if appliers is None:
        ledger.close()
        return
    router = Router(mappings, lambda m: appliers[m.target_database].target_columns(m))
    broker = StompBroker(config.broker)
    for system in router.systems:
        broker.subscribe(config.queue_for(system))
    stats = Stats()
    loop = ApplyLoop(
        broker,
        router,
        dict(appliers),
        config.apply,
        config.retry,
        config.broker.dead_letter_queue,
        stats,
        ledger,
        notifier,
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
        broker.close()
        for applier in appliers.values():
            applier.close()
        ledger.close()
        log.info("syncd stopped: %s", stats.summary())


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


def _install_signal_handlers(stopping: threading.Event) -> None:
    """Signals only set the flag; the loop finishes its batch and returns.

    A second SIGTERM or SIGINT exits at once: what was not acknowledged is redelivered.
    """

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            os._exit(128 + signum)
        stopping.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)


__all__ = ["build_appliers", "run"]
