"""SIGHUP: config.yaml and the mappings read again, and swapped in between batches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from syncd.apply.sql import SqlApplier
from syncd.broker.stomp import StompBroker
from syncd.config import Config, load_config
from syncd.daemon.targets import build_appliers, router_for
from syncd.errors import BrokerUnavailable, ConfigError, TargetUnavailable
from syncd.mapping import load_mappings
from syncd.pipeline.loop import ApplyLoop
from syncd.telemetry.progress import Progress

log = logging.getLogger("syncd")


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


def reload_notice(requested: threading.Event) -> Callable[[], None]:
    """SIGHUP without an apply loop: there is nothing to reload, and the log says so."""

    def notice() -> None:
        if requested.is_set():
            requested.clear()
            log.warning("reload requested: sources change only at the next restart")

    return notice
