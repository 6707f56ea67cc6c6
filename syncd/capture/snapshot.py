"""Snapshots: ``r`` (snapshot read) events for the rows a source's captured tables hold now.

Capture carries changes from the moment it is installed; a snapshot carries the rows that
were there before, so that a new target starts complete.

Why position 0 (:data:`syncd.capture.SNAPSHOT_POSITION`): every captured change sits above
it (LSNs and outbox ids start above 0), and the consumer's position guard applies an event
only when its position is above the one the row was last set at — deleted keys included. So
a snapshot row never overwrites a change the stream carries, however the two interleave:
a row read before a change is older than the change and loses to it; a row read after it
already shows it. The snapshot may therefore read the *current* rows at any time, while
applications write and capture runs, stop and resume: no exported snapshot, no long
transaction holding back vacuum, no lock. (The other side of the same rule: a target row
already set at position 0 is not set again, so a ``restart`` fills in missing rows only.)

Why chunks in primary-key order with keyset pagination (``WHERE (k1, k2) > (last key)
ORDER BY k1, k2 LIMIT n``): each chunk is one short query from the key's index, however far
into the table it is, and the last key is all a rerun needs to go on. After ``publish``
returns (the broker confirmed the chunk) the last key is saved, atomically, to
``<state_dir>/snapshot-<source>.json``; a crash in between only re-sends that chunk, which
the position guard makes harmless (the same key at the same position is a duplicate).

Rows are represented exactly as their capture mode represents them, so a target row written
by a snapshot equals one written by a streamed change, and grouped the same way:

- ``logical`` (PostgreSQL): every column pgoutput publishes (not generated ones) is read as
  the text of its type's output function — ``concat(column)``, not ``column::text``, which
  spells booleans ``true``, adds ``/32`` to inet and trims char(n) — and converted by the
  decoder's own :meth:`~syncd.capture.pgoutput.Relation.row`. The session is set up like
  the capture's (:func:`syncd.capture.logical.connect_kwargs`), so time zone and styles
  match. Groups use :func:`syncd.capture.logical.group_columns`, as the capture does.
- ``outbox``: the row JSON of the capture triggers (PostgreSQL ``to_jsonb``, SQLite
  ``json_object``, MariaDB ``JSON_OBJECT``; :meth:`OutboxSql.row_json`), grouped by the
  primary key's values in key order, as the triggers' ``row_key``.

Table names are written as the capture modes accept them (``schema.table`` or ``table``) and
``source.schema`` is what each mode reports: PostgreSQL the real schema, SQLite ``main``,
MariaDB the database. Driver errors become ``SourceUnavailable`` or ``CaptureError`` here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from syncd import jsonvalue
from syncd.capture import SNAPSHOT_POSITION, Captured, group_for, primary_key, source_errors
from syncd.capture.logical import connect_kwargs, group_columns
from syncd.capture.logical_setup import parse_table
from syncd.capture.outbox_ddl import OutboxSql, PostgresOutbox, SourceTable, outbox_sql
from syncd.capture.pgoutput import Column, Relation
from syncd.errors import CaptureError
from syncd.schema import catalog

__all__ = ["SnapshotReport", "SnapshotSource", "run_snapshot", "state_path"]

Publish = Callable[[Sequence[Captured]], None]
ALIAS = "syncd_row"  # the table's alias in the snapshot's queries
CONNECT_TIMEOUT_S = 10
# Outbox sources' driver settings, as the relay's (utf8mb4: what the triggers wrote in).
_CONNECT_ARGS: dict[str, dict[str, Any]] = {
    "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S},
    "mysql": {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"},
    "mariadb": {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"},
}
# Every column pgoutput publishes, in table order, with the key flag it gives each under the
# table's replica identity: all under FULL, the identity index's under USING INDEX, the
# primary key's under DEFAULT; and whether the column is in the primary key.
_LOGICAL_COLUMNS = """
SELECT a.attname, a.atttypid, a.atttypmod, c.relreplident,
       CASE c.relreplident WHEN 'f' THEN true WHEN 'n' THEN false ELSE EXISTS (
           SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY (i.indkey)
           AND CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END)
       END AS is_key,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
               AND a.attnum = ANY (i.indkey)) AS in_primary_key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = :schema AND c.relname = :table AND a.attgenerated = ''
ORDER BY a.attnum
"""


class SnapshotSource(Protocol):
    """What a snapshot needs of a source (``syncd.config.SourceConfig`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> URL: ...

    @property
    def capture(self) -> str: ...  # logical | outbox

    @property
    def tables(self) -> tuple[str, ...]: ...


@dataclass(slots=True)
class SnapshotReport:
    """What one run did, for ``syncd snapshot`` to print (:meth:`lines`)."""

    source: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows this run published
    done: list[str] = field(default_factory=list)  # every row of these is published now
    skipped: list[str] = field(default_factory=list)  # done by an earlier run: not read
    resumed: bool = False  # went on from the saved progress of an earlier run
    stopped: bool = False  # asked to stop before every table was done

    def lines(self) -> list[str]:
        start = "went on from the saved progress" if self.resumed else "started from the first row"
        lines = [f"snapshot of source {self.source}: {start}"]
        for table in self.skipped:
            lines.append(f"{table}: done by an earlier run, skipped (--restart reads it again)")
        for table, rows in self.rows.items():
            state = "done" if table in self.done else "not finished"
            lines.append(f"{table}: {rows} row(s) published, {state}")
        if self.stopped:
            lines.append("stopped before the end: run the snapshot again to go on from here")
        else:
            lines.append(f"snapshot of source {self.source} is complete")
        return lines


def state_path(state_dir: Path, source: str) -> Path:
    return state_dir / f"snapshot-{source}.json"


def run_snapshot(
    source: SnapshotSource,
    publish: Publish,
    state_dir: Path,
    tables: Sequence[str] | None = None,
    chunk_rows: int = 1000,
    restart: bool = False,
    stopping: threading.Event | None = None,
) -> SnapshotReport:
    """Publish an ``r`` event for every row of ``source``'s tables (or of ``tables``).

    ``publish`` must return only once the broker holds the events; whatever it raises
    propagates, with the progress up to the chunk before saved. A rerun goes on after the
    last saved key and skips finished tables; ``restart`` reads ``tables`` from the start.
    ``stopping`` ends the run after the chunk in hand is published and saved.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    progress = _Progress(state_path(state_dir, source.name), source.name, fresh=restart)
    report = SnapshotReport(source.name)
    with _connected(source) as conn:
        # Every table is checked before the first row goes out: a typo fails the run early.
        plan = [_table(conn, source, name) for name in _selected(conn, source, tables)]
        for table in plan:
            if restart:
                progress.forget(table.qualified)
            saved = progress.of(table)
            report.resumed |= saved.started
            if saved.done:
                report.skipped.append(table.qualified)
                continue
            if not _copy_table(conn, table, saved, progress, publish, chunk_rows, stopping, report):
                report.stopped = True
                break
    return report


def _copy_table(
    conn: Connection,
    table: _Table,
    saved: _TableProgress,
    progress: _Progress,
    publish: Publish,
    chunk_rows: int,
    stopping: threading.Event | None,
    report: SnapshotReport,
) -> bool:
    """Publish ``table`` chunk by chunk from ``saved``; False when ``stopping`` ended it."""
    report.rows[table.qualified] = 0
    while not saved.done:
        if stopping is not None and stopping.is_set():
            return False
        keys, rows = _read_chunk(conn, table, saved.after, chunk_rows)
        if rows:
            now_ms = time.time_ns() // 1_000_000
            publish([_captured(table, row, now_ms) for row in rows])
            saved.after = [_saved_value(value) for value in keys[-1]]
            saved.rows += len(rows)
            report.rows[table.qualified] += len(rows)
        # A short chunk is the last: no need to ask again for nothing.
        saved.done = len(rows) < chunk_rows
        # Saved only now that the broker holds the chunk: a crash before this re-sends it.
        progress.save(table.qualified, saved)
    report.done.append(table.qualified)
    return True


# ------------------------------------------------------------------------------- the tables


@dataclass(frozen=True, slots=True)
class _Table:
    """How to read one table in key order and how its rows become ``r`` events."""

    source: str
    url: URL  # for messages
    schema: str
    name: str
    key: tuple[str, ...]  # the primary key, in key order: the reading order
    group: tuple[str, ...]  # the columns whose values group a row, as the capture's
    position_field: str  # lsn (logical) or seq (outbox)
    key_columns: tuple[str, ...]  # SQL: what a row carries of its key, to go on after it
    key_bounds: tuple[str, ...]  # SQL: the bound values (:k0, …) of the next chunk's WHERE
    values: tuple[str, ...]  # SQL: the row, as the capture reads it
    to_row: Callable[[Sequence[Any]], dict[str, Any]]  # values -> the event's ``after``
    quote: Callable[[str], str]
    # source.types and source.connector, as the captures send them (syncd.schema.catalog).
    types: dict[str, str] = field(default_factory=dict)
    dialect: str = "postgresql"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def query(self, after: bool, limit: int) -> str:
        keys = ", ".join(f"{ALIAS}.{self.quote(column)}" for column in self.key)
        where = f" WHERE ({keys}) > ({', '.join(self.key_bounds)})" if after else ""
        return (
            f"SELECT {', '.join(self.key_columns + self.values)} "
            f"FROM {self.quote(self.schema)}.{self.quote(self.name)} AS {ALIAS}"
            f"{where} ORDER BY {keys} LIMIT {int(limit)}"
        )


def table_reader(conn: Connection, source: SnapshotSource, name: str) -> _Table:
    """How a snapshot reads ``name`` (``syncd verify`` reads rows exactly as snapshots do)."""
    return _table(conn, source, name)


def connected(source: SnapshotSource) -> AbstractContextManager[Connection]:
    """A connection to ``source`` set up as its capture's (time zone, styles, encoding)."""
    return _connected(source)


def _read_chunk(
    conn: Connection, table: _Table, after: list[Any] | None, limit: int
) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """The keys and rows of the next chunk: up to ``limit`` rows after the key ``after``."""
    bounds = {} if after is None else {f"k{i}": _native_value(v) for i, v in enumerate(after)}
    with _translated(table.url, table.source, f"reading {table.qualified}"):
        found = conn.execute(sa.text(table.query(after is not None, limit)), bounds).all()
    width = len(table.key)
    return [tuple(row[:width]) for row in found], [table.to_row(row[width:]) for row in found]


def _captured(table: _Table, row: dict[str, Any], now_ms: int) -> Captured:
    group = group_for(table.schema, table.name, [row.get(column) for column in table.group])
    origin = {
        "name": table.source,
        "schema": table.schema,
        "table": table.name,
        table.position_field: SNAPSHOT_POSITION,
        "ts_ms": now_ms,
    }
    if table.types:
        origin["types"] = table.types
        origin["connector"] = table.dialect
    event = {
        "op": "r",
        "before": None,
        "after": row,
        "source": origin,
        "ts_ms": now_ms,
        "id": f"snapshot:{group}",
    }
    return Captured(event, group)


def _table(conn: Connection, source: SnapshotSource, name: str) -> _Table:
    schema, table = _schema_of(conn, source, name)
    with _translated(source.url, source.name, f"reading {schema}.{table}"):
        key = _primary_key(conn, schema, table)
        if source.capture == "logical":
            return _logical_table(conn, source, schema, table, key)
        return _outbox_table(conn, source, schema, table, key)


def _declared(conn: Connection, schema: str, name: str) -> tuple[dict[str, str], str]:
    """``types`` and ``dialect`` of a _Table: its columns' types as the captures name them."""
    described = catalog.read_table(conn, f"{schema}.{name}")
    if described is None:
        return {}, catalog.dialect_of(conn)
    return {column.name: column.type for column in described.columns}, described.dialect


def _logical_table(
    conn: Connection, source: SnapshotSource, schema: str, name: str, key: tuple[str, ...]
) -> _Table:
    """Read as pgoutput sends it: published columns as output text, converted as decoded."""
    rows = conn.execute(sa.text(_LOGICAL_COLUMNS), {"schema": schema, "table": name}).all()
    columns = tuple(Column(row.attname, row.atttypid, row.atttypmod, row.is_key) for row in rows)
    relation = Relation(0, schema, name, rows[0].relreplident if rows else "d", columns)
    primary_key = [row.attname for row in rows if row.in_primary_key]
    quote = conn.dialect.identifier_preparer.quote
    types, dialect = _declared(conn, schema, name)
    return _Table(
        source=source.name,
        url=source.url,
        schema=schema,
        name=name,
        key=key,
        group=group_columns(relation, primary_key),
        position_field="lsn",
        **_postgres_keys(conn, schema, name, key),
        values=tuple(_output_text(quote(column.name)) for column in columns),
        to_row=lambda values: relation.row(tuple(values)),  # the decoder's own conversion
        quote=quote,
        types=types,
        dialect=dialect,
    )


def _outbox_table(
    conn: Connection, source: SnapshotSource, schema: str, name: str, key: tuple[str, ...]
) -> _Table:
    """Read with the capture triggers' row JSON, grouped by the key as their ``row_key``."""
    sql = _outbox_sql(conn)
    described = sa.inspect(conn).get_columns(name, schema=schema)
    source_table = SourceTable(
        schema=schema,
        name=name,
        key=key,
        columns=tuple(column["name"] for column in described),
        binary=frozenset(c["name"] for c in described if isinstance(c["type"], sa.types._Binary)),
        json=frozenset(
            c["name"]
            for c in described
            if isinstance(sql, PostgresOutbox) and isinstance(c["type"], sa.JSON)
        ),
        floats=frozenset(
            c["name"]
            for c in described
            if isinstance(sql, PostgresOutbox) and isinstance(c["type"], sa.Float)
        ),
    )
    quote = conn.dialect.identifier_preparer.quote
    types, dialect = _declared(conn, schema, name)
    if isinstance(sql, PostgresOutbox):
        keys = _postgres_keys(conn, schema, name, key)
    else:
        keys = {
            "key_columns": tuple(f"{ALIAS}.{quote(column)}" for column in key),
            "key_bounds": tuple(f":k{i}" for i in range(len(key))),
        }
    return _Table(
        source=source.name,
        url=source.url,
        schema=schema,
        name=name,
        key=key,
        group=key,
        position_field="seq",
        **keys,
        values=(sql.row_json(ALIAS, source_table),),
        to_row=_json_row,
        quote=quote,
        types=types,
        dialect=dialect,
    )


def _postgres_keys(
    conn: Connection, schema: str, name: str, key: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    """PostgreSQL keys travel as their output text and come back through a cast to their
    type: any key type resumes exactly, whatever psycopg2 would make of its values."""
    found = conn.execute(
        sa.text(
            "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0"
        ),
        {"schema": schema, "table": name},
    )
    types = {column: type_name for column, type_name in found}
    quote = conn.dialect.identifier_preparer.quote
    return {
        "key_columns": tuple(_output_text(quote(column)) for column in key),
        "key_bounds": tuple(f"CAST(:k{i} AS {types[c]})" for i, c in enumerate(key)),
    }


def _output_text(column: str) -> str:
    # concat() calls the type's output function, as pgoutput does; it makes NULL '', hence
    # the guard (num_nulls, because "IS NULL" of a composite value asks about its fields).
    return f"CASE WHEN num_nulls({ALIAS}.{column}) = 0 THEN concat({ALIAS}.{column}) END"


def _json_row(values: Sequence[Any]) -> dict[str, Any]:
    # As the relay reads the outbox: psycopg2 parses jsonb, the others hand over text.
    value = values[0]
    if isinstance(value, bytes | bytearray):
        value = value.decode()
    row = jsonvalue.loads(value) if isinstance(value, str) else value
    return dict(row)


def _primary_key(conn: Connection, schema: str, table: str) -> tuple[str, ...]:
    return primary_key(
        conn,
        schema,
        table,
        ", so it cannot be snapshotted: a snapshot reads rows in key order (to resume where it "
        "stopped) and groups each by its key. Add one (ALTER TABLE "
        f"{table} ADD PRIMARY KEY (...)), or leave the table out with --table",
    )


def _outbox_sql(conn: Connection) -> OutboxSql:
    return outbox_sql(conn.dialect.name, conn.dialect.default_schema_name or "main")


def _schema_of(conn: Connection, source: SnapshotSource, name: str) -> tuple[str, str]:
    """(schema, table) of a configured table name, as the source's capture mode reads it."""
    if source.capture == "logical":
        return parse_table(name)
    sql = _outbox_sql(conn)
    schema, table = sql.table_of(name)
    if not isinstance(sql, PostgresOutbox) and schema != sql.default_schema:
        raise CaptureError(
            f"table {schema}.{table}: a {sql.backend} source captures the tables of its own "
            f"database ({sql.default_schema}) only; write {table}"
        )
    return schema, table


def _selected(conn: Connection, source: SnapshotSource, tables: Sequence[str] | None) -> list[str]:
    """The configured tables to read: all of them, or ``tables`` (which must be captured)."""
    if tables is None:
        return list(source.tables)
    configured = {_schema_of(conn, source, name): name for name in source.tables}
    unknown = [name for name in tables if _schema_of(conn, source, name) not in configured]
    if unknown:
        raise CaptureError(
            f"source {source.name} does not capture {', '.join(unknown)}: a snapshot reads "
            f"the source's tables only ({', '.join(source.tables)})"
        )
    return [configured[_schema_of(conn, source, name)] for name in tables]


# ----------------------------------------------------------------------------- the progress


@dataclass(slots=True)
class _TableProgress:
    after: list[Any] | None  # the last key published (saved form); None: from the start
    done: bool = False
    rows: int = 0  # published by every run so far

    @property
    def started(self) -> bool:
        return self.done or self.after is not None


class _Progress:
    """The state file: per table, the last key published or that it is done."""

    def __init__(self, path: Path, source: str, fresh: bool) -> None:
        self.path = path
        self.source = source
        # Starting over needs nothing of a state file (it may be what is wrong).
        self.tables: dict[str, dict[str, Any]] = self._load(forgiving=fresh)

    def of(self, table: _Table) -> _TableProgress:
        saved = self.tables.get(table.qualified)
        if saved is None:
            return _TableProgress(None)
        after = saved.get("after")
        if after is not None and len(after) != len(table.key):
            raise CaptureError(
                f"the saved snapshot progress of {table.qualified} ({self.path}) has a key of "
                f"{len(after)} column(s), its primary key {len(table.key)}: run with --restart"
            )
        return _TableProgress(after, bool(saved.get("done")), int(saved.get("rows", 0)))

    def forget(self, table: str) -> None:
        self.tables.pop(table, None)

    def save(self, table: str, progress: _TableProgress) -> None:
        self.tables[table] = {"after": progress.after, "done": progress.done, "rows": progress.rows}
        document = {"source": self.source, "tables": self.tables}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed over: a crash leaves the old state or the new, never half.
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(document, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def _load(self, forgiving: bool) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            if forgiving:
                return {}
            raise CaptureError(
                f"snapshot state {self.path} cannot be read ({error}): delete it, or run with "
                "--restart to start over"
            ) from error
        tables = document.get("tables") if isinstance(document, dict) else None
        if not isinstance(tables, dict) and forgiving:
            return {}
        if not isinstance(tables, dict):
            raise CaptureError(
                f"snapshot state {self.path} is not syncd's: delete it, or move it away"
            )
        return tables


# Key values the JSON state cannot hold as they are, tagged: {"decimal": "1.50"}, …
_SAVED_TYPES: tuple[tuple[str, type, Callable[[Any], Any], Callable[[Any], Any]], ...] = (
    ("datetime", datetime, datetime.isoformat, datetime.fromisoformat),
    ("date", date, date.isoformat, date.fromisoformat),
    ("time", clock_time, clock_time.isoformat, clock_time.fromisoformat),
    ("seconds", timedelta, timedelta.total_seconds, lambda s: timedelta(seconds=s)),
    ("decimal", Decimal, str, Decimal),
    ("bytes", bytes, bytes.hex, bytes.fromhex),
)


def _saved_value(value: Any) -> Any:
    """A key value as the state file keeps it (JSON, tagged where JSON has no such type)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    for tag, kind, save, _ in _SAVED_TYPES:
        if isinstance(value, kind):
            return {tag: save(value)}
    raise CaptureError(f"a snapshot cannot resume after a key of type {type(value).__name__}")


def _native_value(value: Any) -> Any:
    """The key value :func:`_saved_value` saved, as the driver binds it."""
    if isinstance(value, dict) and len(value) == 1:
        [(tag, saved)] = value.items()
        for known, _, _, load in _SAVED_TYPES:
            if tag == known:
                return load(saved)
    return value


# ---------------------------------------------------------------------------- the connection


@contextmanager
def _connected(source: SnapshotSource) -> Iterator[Connection]:
    engine = _engine(source)
    try:
        with _translated(source.url, source.name, "connecting"), engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _engine(source: SnapshotSource) -> Engine:
    url = source.url
    backend = url.get_backend_name()
    if source.capture == "logical":
        if backend != "postgresql":
            raise CaptureError(
                f"source {source.name}: logical capture needs PostgreSQL, not {backend}"
            )
        # The capture's own libpq settings: the same time zone and styles, so output text
        # (timestamptz above all) reads as pgoutput sends it.
        arguments = connect_kwargs(url)
        return sa.create_engine(
            "postgresql+psycopg2://",
            creator=lambda: psycopg2.connect(**arguments),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
    if source.capture != "outbox":
        raise CaptureError(f"source {source.name}: capture {source.capture!r} is not known")
    connect_args: dict[str, Any] = _CONNECT_ARGS.get(backend, {})
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        # A missing file is an unreachable source, not a new empty database to create.
        path = url.database or ""
        url = url.set(database=f"file:{path}").update_query_dict({"mode": "rw", "uri": "true"})
    # AUTOCOMMIT: each chunk is its own short read, no transaction held while publishing.
    return sa.create_engine(
        url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=connect_args
    )


def _translated(url: URL, source: str, what: str) -> AbstractContextManager[None]:
    return source_errors.translated(url, f"snapshot of source {source}", what)
