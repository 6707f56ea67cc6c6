"""The daemon's target databases: an applier for each, checked against its tables."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from syncd.apply.sql import SqlApplier
from syncd.backoff import Backoff
from syncd.config import Config
from syncd.daemon.notify import Notifier
from syncd.errors import ConfigError, PermanentApplyError, Problem, TargetUnavailable
from syncd.mapping import Mapping
from syncd.routing import Router

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


def wait_for_targets(
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
