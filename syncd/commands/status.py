"""``syncd status``: what waits on the broker, and how far each mapping's target has got.

It reads, never writes: queue statistics from the broker (ActiveMQ's statistics plugin) and,
from each target database, the positions table the daemon keeps there. A part it cannot reach
is reported as such and the rest is still shown; the exit code is then 3.

``--json`` prints one document for scripts; its shape (``"format": 1``) only ever grows::

    {
      "format": 1,
      "ok": true,                          # false: the broker or a target could not be read
      "checked_at": "2025-06-01T10:00:00.123456+00:00",
      "broker": {
        "reachable": true,
        "error": null,                     # why not reachable
        "dead_letters": 0,                 # messages on the dead-letter queue (null: unknown)
        "queues": [                        # the source systems' queues, then the dead letters'
          {"queue": "/queue/syncd.crm", "role": "source", "system": "crm",
           "exists": true,                 # false: the broker does not know the queue (yet)
           "depth": 3,                     # waiting + delivered but not yet acknowledged
           "consumers": 1, "in_flight": 2,
           "enqueued": 120, "dequeued": 117}  # counted since the broker started
          # role "dead-letters" (system null) for broker.dead_letter_queue; the numbers
          # and "exists" are null while the broker is unreachable
        ]
      },
      "mappings": [
        {"name": "customers", "source_system": "crm", "source_table": "public.customers",
         "queue": "/queue/syncd.crm", "database": "warehouse", "table": "dim_customer",
         "state": "ok",                    # "ok" | "never applied" | "unreachable"
         "keys": 1200,                     # keys tracked in the positions table, deleted too
         "last_position": 1042,            # highest position applied
         "last_applied_at": "2025-06-01T09:59:58.5+00:00",
         "lag_s": 0.4,                     # now minus the source time of the newest change
         "error": null}                    # why "unreachable"
      ]
    }

Unknown values are null: ``lag_s`` when the events carry no ``source.ts_ms``; everything but
``keys`` (0) for a mapping never applied; every number for an unreachable one.
"""

from __future__ import annotations

import argparse
import collections.abc as abc
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from syncd.apply.positions import positions_table
from syncd.broker.statistics import QueueStats, queue_statistics
from syncd.config import Config, DatabaseConfig
from syncd.errors import BrokerUnavailable, ExitCode, first_line
from syncd.mapping import Mapping, load_mappings

FORMAT_VERSION = 1
# A status check is interactive: a target that does not answer soon is reported, not waited for.
TARGET_CONNECT_TIMEOUT_S = 5

MappingState = Literal["ok", "never applied", "unreachable"]


@dataclass(frozen=True)
class Progress:
    """What a target's positions table says about one mapping."""

    keys: int  # (mapping, key) rows, deleted keys included
    last_position: int | None
    last_applied_at: datetime | None  # timezone-aware, UTC
    newest_source_ts_ms: int | None  # source commit time of the newest change applied


@dataclass(frozen=True)
class MappingStatus:
    mapping: Mapping
    state: MappingState
    progress: Progress | None  # None when unreachable
    error: str | None = None  # why unreachable


@dataclass(frozen=True)
class StatusReport:
    """Everything ``syncd status`` found, at ``checked_at``."""

    checked_at: datetime  # timezone-aware, UTC
    source_queues: abc.Mapping[str, str]  # source system -> its queue, in mapping order
    dead_letter_queue: str
    queues: abc.Mapping[str, QueueStats] | None  # None: the broker could not be read
    broker_error: str | None
    mappings: tuple[MappingStatus, ...]


# --- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``syncd status``'s own options."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document for scripts "
        "(its shape is described in syncd/commands/status.py)",
    )


def run_status(config: Config, args: argparse.Namespace) -> int:
    """Print the status (a table, or JSON with ``--json``); return the ExitCode.

    0 when everything could be read; 3 (UNAVAILABLE) when the broker or a target could not,
    after printing what could be read.
    """
    report = gather_status(config)
    if args.json:
        print(json.dumps(status_document(report), indent=2))
    else:
        print(format_status(report), end="")
    return exit_code(report)


def gather_status(config: Config) -> StatusReport:
    """Read the positions of every mapping from its target, and the queues from the broker."""
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    statuses: dict[str, MappingStatus] = {}
    for name, database in config.databases.items():
        used = [m for m in mappings if m.target_database == name]
        if used:
            statuses.update(read_progress(database, used, config))
    source_queues = {m.source_system: config.queue_for(m.source_system) for m in mappings}
    asked = [*source_queues.values(), config.broker.dead_letter_queue]
    queues: abc.Mapping[str, QueueStats] | None = None
    broker_error = None
    try:
        queues = queue_statistics(config.broker, asked, config.broker.connect_timeout_s)
    except BrokerUnavailable as exc:
        broker_error = str(exc)
    return StatusReport(
        checked_at=datetime.now(UTC),
        source_queues=source_queues,
        dead_letter_queue=config.broker.dead_letter_queue,
        queues=queues,
        broker_error=broker_error,
        mappings=tuple(statuses[m.name] for m in mappings),
    )


def exit_code(report: StatusReport) -> ExitCode:
    unreadable = report.queues is None or any(m.state == "unreachable" for m in report.mappings)
    return ExitCode.UNAVAILABLE if unreadable else ExitCode.OK


# --- reading a target ---------------------------------------------------------------------------


def read_progress(
    database: DatabaseConfig, mappings: Sequence[Mapping], config: Config
) -> dict[str, MappingStatus]:
    """The status of each of ``mappings`` (all on ``database``), by mapping name.

    Any failure to read — refused, timed out, no permission — marks them all "unreachable";
    a database without the positions table (the daemon never ran on it) is "never applied".
    """
    table = positions_table(config.apply.positions_table)
    try:
        engine = _read_only_engine(database.url, config.apply.timeout_s)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(table.name):
                    rows: dict[str, Progress] = {}
                else:
                    rows = _progress_rows(conn, table, [m.name for m in mappings])
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        reason = f"database {database.name}: {first_line(exc)}"
        return {m.name: MappingStatus(m, "unreachable", None, reason) for m in mappings}
    return {m.name: _mapping_status(m, rows.get(m.name)) for m in mappings}


def _mapping_status(mapping: Mapping, progress: Progress | None) -> MappingStatus:
    if progress is None or progress.keys == 0:
        return MappingStatus(mapping, "never applied", Progress(0, None, None, None))
    return MappingStatus(mapping, "ok", progress)


def _progress_rows(conn: sa.Connection, table: sa.Table, names: list[str]) -> dict[str, Progress]:
    p = table.c
    query = (
        sa.select(
            p.mapping,
            sa.func.count().label("key_count"),
            sa.func.max(p.position).label("last_position"),
            sa.func.max(p.applied_at).label("last_applied_at"),
            sa.func.max(p.source_ts_ms).label("newest_source_ts_ms"),
        )
        .where(p.mapping.in_(names))
        .group_by(p.mapping)
    )
    return {
        row.mapping: Progress(
            keys=row.key_count,
            last_position=row.last_position,
            last_applied_at=_as_utc(row.last_applied_at),
            newest_source_ts_ms=row.newest_source_ts_ms,
        )
        for row in conn.execute(query)
    }


def _read_only_engine(url: str, timeout_s: float) -> Engine:
    """An engine that cannot change the target, and gives up on it quickly."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    path = parsed.database
    if backend == "sqlite" and path and path != ":memory:" and not path.startswith("file:"):
        # mode=ro: a status check must never create the file of a missing database.
        uri = f"file:{quote(path)}?mode=ro"
        return sa.create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, timeout=TARGET_CONNECT_TIMEOUT_S),
            poolclass=NullPool,
        )
    if backend == "postgresql":
        timeout_ms = max(1, round(timeout_s * 1000))
        return sa.create_engine(
            parsed,
            poolclass=NullPool,
            connect_args={
                "connect_timeout": TARGET_CONNECT_TIMEOUT_S,
                "options": f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}",
            },
        )
    return sa.create_engine(parsed, poolclass=NullPool)


def _as_utc(value: datetime | str | None) -> datetime | None:
    """SQLite hands back CURRENT_TIMESTAMP as naive UTC (or as text); PostgreSQL as aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- pure: numbers, the JSON document, the table ------------------------------------------------


def lag_seconds(newest_source_ts_ms: int | None, now: datetime) -> float | None:
    """How far behind its source a mapping is: ``now`` minus the source time of the newest
    change it applied, in seconds (never negative: clocks differ); None if unknown."""
    if newest_source_ts_ms is None:
        return None
    return max(0.0, round(now.timestamp() - newest_source_ts_ms / 1000, 3))


def status_document(report: StatusReport) -> dict[str, Any]:
    """The ``--json`` document (see the module's docstring)."""
    dead_letters = report.queues[report.dead_letter_queue] if report.queues is not None else None
    return {
        "format": FORMAT_VERSION,
        "ok": exit_code(report) is ExitCode.OK,
        "checked_at": report.checked_at.isoformat(),
        "broker": {
            "reachable": report.queues is not None,
            "error": report.broker_error,
            "dead_letters": dead_letters.depth if dead_letters is not None else None,
            "queues": [
                *(_queue_document(report, q, "source", s) for s, q in report.source_queues.items()),
                _queue_document(report, report.dead_letter_queue, "dead-letters", None),
            ],
        },
        "mappings": [_mapping_document(report, m) for m in report.mappings],
    }


def _queue_document(
    report: StatusReport, queue: str, role: str, system: str | None
) -> dict[str, Any]:
    stats = report.queues.get(queue) if report.queues is not None else None
    numbers = ("exists", "depth", "consumers", "in_flight", "enqueued", "dequeued")
    document: dict[str, Any] = {"queue": queue, "role": role, "system": system}
    document.update({name: getattr(stats, name) if stats else None for name in numbers})
    return document


def _mapping_document(report: StatusReport, status: MappingStatus) -> dict[str, Any]:
    mapping, progress = status.mapping, status.progress
    applied_at = progress.last_applied_at if progress else None
    return {
        "name": mapping.name,
        "source_system": mapping.source_system,
        "source_table": mapping.source_table,
        "queue": report.source_queues[mapping.source_system],
        "database": mapping.target_database,
        "table": mapping.target_table,
        "state": status.state,
        "keys": progress.keys if progress else None,
        "last_position": progress.last_position if progress else None,
        "last_applied_at": applied_at.isoformat() if applied_at else None,
        "lag_s": lag_seconds(progress.newest_source_ts_ms, report.checked_at) if progress else None,
        "error": status.error,
    }


def format_status(report: StatusReport) -> str:
    """The human-readable status: the queues, the dead letters, then a row per mapping."""
    lines = [*_broker_lines(report), "", *_mapping_lines(report)]
    return "\n".join(lines) + "\n"


def _broker_lines(report: StatusReport) -> list[str]:
    if report.queues is None:
        return [f"Broker: unreachable: {report.broker_error}"]
    rows = [["QUEUE", "DEPTH", "CONSUMERS", "ENQUEUED", "DEQUEUED", ""]]
    for queue in report.source_queues.values():
        stats = report.queues[queue]
        note = "" if stats.exists else "not on the broker yet"
        counts = (stats.depth, stats.consumers, stats.enqueued, stats.dequeued)
        rows.append([queue, *(str(n) for n in counts), note])
    dead = report.queues[report.dead_letter_queue]
    return [
        "Queues (enqueued and dequeued count since the broker started):",
        *_table(rows, right_aligned={1, 2, 3, 4}),
        f"Dead letters: {dead.depth} on {report.dead_letter_queue}",
    ]


def _mapping_lines(report: StatusReport) -> list[str]:
    if not report.mappings:
        return ["Mappings: none"]
    rows = [["MAPPING", "TARGET", "KEYS", "LAST POSITION", "LAST APPLIED AT", "LAG"]]
    errors = []
    for status in report.mappings:
        mapping, progress = status.mapping, status.progress
        target = f"{mapping.target_database}.{mapping.target_table}"
        if status.state != "ok" or progress is None:
            keys = str(progress.keys) if progress else "-"
            rows.append([mapping.name, target, keys, "-", status.state, "-"])
            if status.error:
                errors.append(f"  {mapping.name}: {status.error}")
            continue
        applied_at = progress.last_applied_at
        lag = lag_seconds(progress.newest_source_ts_ms, report.checked_at)
        rows.append(
            [
                mapping.name,
                target,
                str(progress.keys),
                str(progress.last_position),
                f"{applied_at:%Y-%m-%d %H:%M:%S} UTC" if applied_at else "-",
                format_duration(lag) if lag is not None else "unknown",
            ]
        )
    return [*_table(rows, right_aligned={2, 3, 5}), *errors]


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``12.5 min``, ``3.2 h``, ``2.1 d``: short, and precise enough."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _table(rows: Sequence[Sequence[str]], right_aligned: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right_aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
