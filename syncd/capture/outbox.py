"""Outbox capture: triggers write each row change into ``syncd_outbox``; a relay publishes it.

``install`` creates the outbox table (one per database, shared by every source; its
``source`` column says whose a row is) and, per captured table, AFTER INSERT/UPDATE/DELETE
row triggers that insert the change into the outbox inside the changing transaction — so a
rolled-back transaction leaves nothing behind. Applications may also write their own events
with :func:`write_event`, inside their own transaction. :class:`OutboxCapture` relays a
source's rows in id order; the outbox id is the event's position (``source.seq``).

Schema and table names, per dialect (``source.schema`` + ``source.table`` of the events):

- PostgreSQL: the table's real schema; an unqualified name in ``install``'s list means the
  connection's current schema (``public`` unless search_path says otherwise), where the
  outbox lives too. A mapping writes ``table: public.customers``.
- SQLite: schema ``main`` (SQLite's own name of the database file); tables are ``customers``
  or ``main.customers``. A mapping writes ``table: customers`` (or ``main.customers``).
- MariaDB/MySQL: schema = the URL's database (as Debezium's ``source.db``); only that
  database's tables are captured. A mapping writes ``table: customers``.

The schema is never null, so an event's group (``schema.table:key``) is the one
``Publisher.group_of`` makes for it.

Trigger names: PostgreSQL has one function ``syncd_<source>_capture()`` per source and a
trigger of the same name on each table (it gets the key columns as arguments; ``to_jsonb``
carries every column, so an added column needs no re-install). SQLite and MariaDB have three
triggers per table, ``syncd_<source>_<table>_{ins,upd,del}``, listing the columns the table
had at install time: re-install after adding a column. MariaDB's DDL is not transactional, so
an interrupted install there may leave part of its triggers: run it again.

This is the one module that runs the outbox's SQL: driver errors become ``SourceUnavailable``
(try again later) or ``CaptureError`` (a human must act) here.
"""

from __future__ import annotations

import itertools
import logging
import select
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.pool import NullPool

from syncd import jsonvalue
from syncd.apply.postgresql import LIBPQ_KEEPALIVES
from syncd.capture import Captured, CapturedBatch, group_for, primary_key, source_errors
from syncd.capture.outbox_ddl import (
    NOTIFY_CHANNEL,
    OUTBOX,
    OutboxSql,
    PostgresOutbox,
    SourceTable,
    check_source_name,
    outbox_sql,
)
from syncd.errors import CaptureError, DecodeError, SourceUnavailable, SyncdError
from syncd.schema import catalog

__all__ = ["OutboxCapture", "install", "install_hint", "uninstall", "write_event"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
# pymysql has no TCP keepalives: a server silent this long is gone. Longer than any lock wait.
MYSQL_READ_TIMEOUT_S = 60
LOCK_WAIT_MAX_S = 30  # one lock statement waits at most this long; poll waits in rounds
IDLE_POLL_S = 0.05  # SQLite and MariaDB look for new rows this often while idle
LISTEN_WAIT_MAX_S = 5  # PostgreSQL: look anyway this often, should a notification go astray


def install_hint(source: str) -> str:
    return (
        f"the outbox of source {source} is not installed: run "
        f"`syncd capture install -c CONFIG --source {source}`"
    )


# -------------------------------------------------------------------- install and uninstall


def install(url: URL, source: str, tables: Sequence[str]) -> list[str]:
    """Create the outbox and ``source``'s capture triggers on ``tables``; what it did, in lines.

    Idempotent: triggers are dropped and created again (so a re-install picks up added
    columns), and triggers of ``source`` on tables no longer listed are dropped. Raises
    ``CaptureError`` for a missing table or one without a primary key, before changing
    anything.
    """
    check_source_name(source)
    with _admin_connection(url, source, "installing outbox capture") as conn:
        sql = _sql_for(conn)
        with _ddl_transaction(conn, sql):
            return _install(conn, sql, source, tables)


def uninstall(url: URL, source: str, force: bool = False) -> list[str]:
    """Drop ``source``'s triggers, and the outbox once no other source uses it.

    Refuses (``CaptureError``) while the outbox holds changes of ``source`` that no relay has
    published, unless ``force`` — which discards them.
    """
    check_source_name(source)
    with _admin_connection(url, source, "uninstalling outbox capture") as conn:
        sql = _sql_for(conn)
        with _ddl_transaction(conn, sql):
            return _uninstall(conn, sql, source, force)


def _install(conn: Connection, sql: OutboxSql, source: str, tables: Sequence[str]) -> list[str]:
    wanted = [_reflect_table(conn, sql, table) for table in tables]
    existed = sa.inspect(conn).has_table(OUTBOX)
    _run(conn, sql.create_outbox())
    lines = [f"{'kept' if existed else 'created'} outbox table {OUTBOX}"]
    if isinstance(sql, PostgresOutbox):
        conn.exec_driver_sql(sql.capture_function(source))
        lines.append(f"created function {sql.function_name(source)}()")
    installed = _installed(conn, sql)
    listed = {(table.schema, table.name) for table in wanted}
    for schema, name in sorted(sql.captured_tables(installed, source) - listed):
        _run(conn, sql.drop_triggers(source, schema, name))
        lines.append(f"dropped triggers on {schema}.{name}: no longer in the list of tables")
    for table in wanted:
        sql.check_collisions(installed, source, table)
        _run(conn, sql.capture_triggers(source, table))
        names = sql.trigger_names(source, table.name)
        lines.append(
            f"created trigger{'s' if len(names) > 1 else ''} {', '.join(names)} on "
            f"{table.qualified} (key: {', '.join(table.key)})"
        )
    return lines


def _uninstall(conn: Connection, sql: OutboxSql, source: str, force: bool) -> list[str]:
    has_outbox = sa.inspect(conn).has_table(OUTBOX)
    pending = _count(conn, source) if has_outbox else 0
    if pending and not force:
        raise CaptureError(
            f"the outbox still holds {pending} unpublished change(s) of source {source}: let "
            "`syncd run` publish them first, or uninstall with --force to discard them"
        )
    lines = []
    for schema, name in sorted(sql.captured_tables(_installed(conn, sql), source)):
        _run(conn, sql.drop_triggers(source, schema, name))
        lines.append(f"dropped triggers of source {source} on {schema}.{name}")
    if isinstance(sql, PostgresOutbox) and _has_function(conn, sql, source):
        conn.exec_driver_sql(sql.drop_function(source))
        lines.append(f"dropped function {sql.function_name(source)}()")
    if has_outbox and pending:
        delete = sa.text(f"DELETE FROM {OUTBOX} WHERE source = :source")
        conn.execute(delete, {"source": source})
        lines.append(f"discarded {pending} unpublished change(s) of source {source}")
    if has_outbox:
        lines.append(_drop_outbox_if_unused(conn, sql, source))
    return lines or [f"nothing of source {source} was installed"]


def _drop_outbox_if_unused(conn: Connection, sql: OutboxSql, source: str) -> str:
    if sql.other_sources_installed(_installed(conn, sql), source):
        return f"kept outbox table {OUTBOX}: other sources still capture into it"
    # Rows of a source without triggers (write_event only, or a forced uninstall racing a
    # write) still wait for a relay: dropping the table would lose them.
    remaining = conn.execute(sa.text(f"SELECT count(*) FROM {OUTBOX}")).scalar_one()
    if remaining:
        return f"kept outbox table {OUTBOX}: it holds {remaining} unpublished change(s)"
    _run(conn, sql.drop_outbox())
    return f"dropped outbox table {OUTBOX}"


def _reflect_table(conn: Connection, sql: OutboxSql, text: str) -> SourceTable:
    schema, name = sql.table_of(text)
    key = _primary_key(conn, sql, schema, name)
    columns = sa.inspect(conn).get_columns(name, schema=schema)
    return SourceTable(
        schema=schema,
        name=name,
        key=key,
        columns=tuple(column["name"] for column in columns),
        binary=frozenset(c["name"] for c in columns if isinstance(c["type"], sa.types._Binary)),
    )


def _primary_key(conn: Connection, sql: OutboxSql, schema: str, name: str) -> tuple[str, ...]:
    """The key columns of a table the outbox may capture, or ``CaptureError`` saying why not."""
    if not isinstance(sql, PostgresOutbox) and schema != sql.default_schema:
        raise CaptureError(
            f"table {schema}.{name}: a {sql.backend} source captures the tables of its own "
            f"database ({sql.default_schema}) only; write {name}"
        )
    return primary_key(
        conn,
        schema,
        name,
        f": add one (ALTER TABLE {name} ADD PRIMARY KEY (...)); the outbox identifies each "
        "changed row by it",
    )


def _installed(conn: Connection, sql: OutboxSql) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.exec_driver_sql(sql.installed_triggers())]


def _has_function(conn: Connection, sql: PostgresOutbox, source: str) -> bool:
    return any(row[0] == sql.function_name(source) for row in _installed(conn, sql))


def _count(conn: Connection, source: str) -> int:
    query = sa.text(f"SELECT count(*) FROM {OUTBOX} WHERE source = :source")
    count: int = conn.execute(query, {"source": source}).scalar_one()
    return count


def _run(conn: Connection, statements: Sequence[str]) -> None:
    for statement in statements:
        conn.exec_driver_sql(statement)


@contextmanager
def _admin_connection(url: URL, source: str, what: str) -> Iterator[Connection]:
    engine = _engine(url)
    try:
        with _translated(url, source, what), engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def _ddl_transaction(conn: Connection, sql: OutboxSql) -> Iterator[None]:
    """All of it or none of it, where the dialect's DDL is transactional (not MariaDB's)."""
    if not sql.begin_ddl:
        yield
        return
    conn.exec_driver_sql(sql.begin_ddl)
    try:
        yield
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


# ---------------------------------------------------------------------------- write_event


def write_event(connection: Connection, source: str, event: dict[str, Any]) -> None:
    """Put an application's own change event into the outbox, in the caller's transaction.

    ``event`` is Debezium-shaped: ``op`` (c, u or d), ``before``, ``after`` and
    ``source: {schema, table}``; the table must exist in this database with a primary key,
    whose values (from ``after``, or ``before`` for deletes) group the event. The relay
    publishes it exactly like a change the triggers captured, at the outbox id it gets here;
    if the caller's transaction rolls back, so does the event.
    """
    check_source_name(source)
    sql = _sql_for(connection)
    op, schema, table, row = _event_parts(event, sql.default_schema)
    url = connection.engine.url
    with _translated(url, source, "writing an event to the outbox"):
        inspector = sa.inspect(connection)
        if not inspector.has_table(OUTBOX):
            raise CaptureError(install_hint(source))
        key = _primary_key(connection, sql, schema, table)
        missing = [column for column in key if column not in row]
        if missing:
            raise DecodeError(
                f"event for {schema}.{table}: the row lacks key column(s) {', '.join(missing)}"
            )
        parameters = {
            "source": source,
            "schema_name": schema,
            "table_name": table,
            "op": op,
            "row_key": _json_text([row[column] for column in key]),
            "before": _json_text(event.get("before")),
            "after": _json_text(event.get("after")),
        }
        connection.execute(sa.text(sql.insert_event()), parameters)


def _event_parts(
    event: dict[str, Any], default_schema: str
) -> tuple[str, str, str, dict[str, Any]]:
    """(op, schema, table, the row whose key groups the event), or ``DecodeError``."""
    op = event.get("op")
    if op not in ("c", "u", "d"):
        raise DecodeError(f"event 'op' must be c, u or d, found {op!r}")
    origin = event.get("source")
    table = origin.get("table") if isinstance(origin, dict) else None
    if not isinstance(origin, dict) or not isinstance(table, str) or not table:
        raise DecodeError("event 'source' must be an object with the 'table' it changes")
    schema = origin.get("schema") or origin.get("db") or default_schema
    row_field = "before" if op == "d" else "after"
    row = event.get(row_field)
    if not isinstance(row, dict):
        raise DecodeError(f"an event with op {op!r} needs '{row_field}': the row, as an object")
    for image in ("before", "after"):
        if event.get(image) is not None and not isinstance(event[image], dict):
            raise DecodeError(f"event '{image}' must be an object or null")
    return op, str(schema), table, row


def _json_text(value: Any) -> str | None:
    # Dates are not JSON: they travel as text, as a publisher would send them; a Decimal as
    # the number it is, every digit.
    return None if value is None else jsonvalue.dumps(value)


# -------------------------------------------------------------------------------- the relay


@dataclass(frozen=True, slots=True)
class _Token:
    """What ``confirm`` needs: which outbox rows the batch carries, under which hold."""

    number: int
    ids: tuple[int, ...]


class _DeclaredTypes:
    """Each captured table's column types, as every event's ``source.types`` names them
    (what the consumer's on_new_column: add goes by), read from the source's catalog.

    Read again when a row carries a column not known yet (an ALTER TABLE ADD COLUMN since);
    a column the catalog does not have (dropped since the row was written) is not looked for
    again.
    """

    def __init__(self) -> None:
        self.dialect = "postgresql"
        self._tables: dict[tuple[str, str], dict[str, str]] = {}
        self._unknown: dict[tuple[str, str], set[str]] = {}

    def of(self, conn: Connection, schema: str, table: str, row: Any) -> dict[str, str] | None:
        if not isinstance(row, dict):
            return None
        known = self._tables.get((schema, table))
        unknown = self._unknown.setdefault((schema, table), set())
        if known is None or any(c not in known and c not in unknown for c in row):
            described = catalog.read_table(conn, f"{schema}.{table}" if schema else table)
            if described is not None:
                self.dialect = described.dialect
            # No such table (an application's own event, write_event): nothing to declare,
            # and not looked for again until a row brings a column not seen yet.
            columns = described.columns if described is not None else ()
            known = self._tables[(schema, table)] = {c.name: c.type for c in columns}
            unknown.update(c for c in row if c not in known)
        return known or None


class OutboxCapture:
    """The relay of one source's outbox rows (implements ``syncd.capture.Capture``).

    ``poll`` takes the source's exclusive relay lock — PostgreSQL
    ``pg_advisory_xact_lock`` in the relay's transaction, MariaDB ``GET_LOCK``, SQLite
    ``BEGIN IMMEDIATE`` — reads up to ``max_batch_events`` rows in id order and keeps the
    lock until ``confirm`` deletes exactly those rows and commits. A second relay meanwhile
    waits (its poll returns None), so two relays never publish out of order. A poll that finds
    nothing lets go at once, so SQLite writers are not held up. A batch may end inside a
    source transaction whose rows outnumber ``max_batch_events``; the rest follows next.

    ``tables`` is what ``install`` captures; the relay publishes every outbox row of the
    source, :func:`write_event` 's included.
    """

    def __init__(
        self,
        url: URL,
        source: str,
        tables: Sequence[str],
        max_batch_events: int = 500,
        atomic: bool = False,
    ) -> None:
        check_source_name(source)
        if max_batch_events < 1:
            raise ValueError(f"max_batch_events must be at least 1, not {max_batch_events}")
        self.source = source
        self.tables = tuple(tables)
        self._url = url
        self._max_batch_events = max_batch_events
        # transactions: atomic (PostgreSQL): whole committed transactions, in commit order.
        self._atomic = atomic
        self._engine = _engine(url)
        # PostgreSQL over psycopg2 sleeps on LISTEN; everything else polls while idle.
        self._listens = url.get_backend_name() == "postgresql" and (
            url.get_driver_name() == "psycopg2"
        )
        self._conn: Connection | None = None
        self._sql: OutboxSql | None = None
        self._held: _Token | None = None  # the batch whose lock is held until confirm
        self._numbers = itertools.count(1)
        self._types = _DeclaredTypes()

    def poll(self, timeout_s: float) -> CapturedBatch | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        # A batch polled again before it was confirmed was not (surely) published: let go,
        # and its rows are read again below — a re-send, which positions make harmless.
        self._let_go()
        with self._translated():
            while True:
                conn, sql = self._connected()
                if not self._lock(conn, sql, deadline):
                    return None
                select = sql.select_batch()
                if self._atomic and isinstance(sql, PostgresOutbox):
                    select = sql.select_transactions()
                rows = conn.execute(
                    sa.text(select),
                    {"source": self.source, "limit": self._max_batch_events},
                ).all()
                if rows:
                    return self._batch(rows, conn)
                self._unlock(conn, sql, commit=False)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._wait_for_change(conn, remaining)

    def confirm(self, batch: CapturedBatch) -> None:
        held = self._held
        if held is None or batch.token is not held:
            # This relay let go of the batch (polled again, lost its connection, closed):
            # its rows stay in the outbox and are sent again, which positions make harmless.
            log.warning(
                "outbox of source %s: confirm of a batch no longer held; its %d event(s) "
                "will be sent again",
                self.source,
                len(batch.events),
            )
            return
        with self._translated():
            conn, sql = self._connected()
            # The runner calls this only after the broker confirmed every event. A crash
            # before the commit below leaves the rows in the outbox and the next relay sends
            # them again — harmless, since the consumer's position guard skips a position it
            # has applied. Deleting before publishing could lose them instead.
            delete = sa.text(f"DELETE FROM {OUTBOX} WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            )
            conn.execute(delete, {"ids": list(held.ids)})
            self._unlock(conn, sql, commit=True)

    def close(self) -> None:
        self._let_go()
        self._discard()
        self._engine.dispose()

    # -- the lock ---------------------------------------------------------------------------

    def _lock(self, conn: Connection, sql: OutboxSql, deadline: float) -> bool:
        """Take the relay lock, waiting until ``deadline``; False if another relay kept it."""
        while True:
            wait_s = min(max(0.0, deadline - time.monotonic()), LOCK_WAIT_MAX_S)
            if self._try_lock(conn, sql, wait_s):
                return True
            if time.monotonic() >= deadline:
                return False

    def _try_lock(self, conn: Connection, sql: OutboxSql, wait_s: float) -> bool:
        try:
            result = None
            for statement in sql.lock(self.source, wait_s):
                result = conn.exec_driver_sql(statement)
            answer = result.scalar() if result is not None and result.returns_rows else None
        except sa.exc.DBAPIError as error:
            if not sql.lock_refused(error.orig if error.orig is not None else error):
                raise
            if sql.rollback_after_refusal:
                conn.exec_driver_sql("ROLLBACK")
            return False
        return sql.lock_obtained(answer)

    def _unlock(self, conn: Connection, sql: OutboxSql, commit: bool) -> None:
        self._held = None
        _run(conn, sql.unlock(self.source, commit))

    def _let_go(self) -> None:
        if self._held is None or self._conn is None or self._sql is None:
            self._held = None
            return
        try:
            self._unlock(self._conn, self._sql, commit=False)
        except sa.exc.DBAPIError:
            self._discard()  # closing the connection lets go of the lock all the same

    # -- reading ------------------------------------------------------------------------------

    def _batch(self, rows: Sequence[Row[Any]], conn: Connection) -> CapturedBatch:
        now_ms = int(time.time() * 1000)
        events = []
        for row in rows:
            outbox_id, schema, table, op, row_key, before, after, tx_id, created_ms = tuple(row)
            after, before = _json_value(after), _json_value(before)
            origin = {
                "name": self.source,
                "schema": schema,
                "table": table,
                "seq": int(outbox_id),
                "txId": None if tx_id is None else int(tx_id),
                "ts_ms": int(created_ms),
            }
            types = self._types.of(conn, schema, table, after or before)
            if types:
                origin["types"], origin["connector"] = types, self._types.dialect
            event = {
                "op": op,
                "before": before,
                "after": after,
                "source": origin,
                "ts_ms": now_ms,
            }
            events.append(Captured(event, group_for(schema, table, _json_value(row_key))))
        self._held = _Token(next(self._numbers), tuple(int(row[0]) for row in rows))
        return CapturedBatch(events, self._held)

    def _wait_for_change(self, conn: Connection, wait_s: float) -> None:
        if not self._listens:
            time.sleep(min(wait_s, IDLE_POLL_S))
            return
        raw: Any = conn.connection.dbapi_connection
        try:
            raw.poll()  # notifications that came with the last answers count too
            if not raw.notifies:
                select.select([raw], [], [], min(wait_s, LISTEN_WAIT_MAX_S))
                raw.poll()
        except psycopg2.Error as error:
            self._discard()
            raise SourceUnavailable(f"outbox of source {self.source}: {error}") from error
        raw.notifies.clear()

    # -- the connection -----------------------------------------------------------------------

    def _connected(self) -> tuple[Connection, OutboxSql]:
        if self._conn is not None and self._sql is not None:
            return self._conn, self._sql
        conn = self._engine.connect()
        try:
            sql = _sql_for(conn)
            if not sa.inspect(conn).has_table(OUTBOX):
                raise CaptureError(install_hint(self.source))
            if self._listens:
                conn.exec_driver_sql(f"LISTEN {NOTIFY_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._conn, self._sql = conn, sql
        return conn, sql

    def _discard(self) -> None:
        """Drop the connection (and with it any lock); the next poll connects again."""
        self._held = None
        conn, self._conn, self._sql = self._conn, None, None
        if conn is None:
            return
        try:
            conn.invalidate()
            conn.close()
        except sa.exc.SQLAlchemyError as error:
            log.debug("outbox of source %s: closing the connection: %s", self.source, error)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as error:
            # Whatever failed, start afresh: the next poll connects again (after an outage,
            # that is the reconnect), and closing lets go of any lock this relay held.
            self._discard()
            raise _translate(self._url, self.source, "relaying the outbox", error) from error


# ----------------------------------------------------------------------------------- shared


def _engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "syncd outbox",
            **LIBPQ_KEEPALIVES,
        }
    elif backend in ("mysql", "mariadb"):
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": MYSQL_READ_TIMEOUT_S,
            "write_timeout": MYSQL_READ_TIMEOUT_S,
            "charset": "utf8mb4",
        }
    elif backend == "sqlite" and url.database not in (None, "", ":memory:"):
        url = _existing_sqlite_file(url)
    # One connection held for a long time: NullPool makes close() really close it, and the
    # relay's transactions are spelled out (BEGIN … COMMIT) in autocommit mode.
    return sa.create_engine(
        url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=connect_args
    )


def _existing_sqlite_file(url: URL) -> URL:
    """A missing SQLite file is an unreachable source, not a new empty database to create."""
    database = url.database or ""
    if database.startswith("file:"):
        return url
    return url.set(database=f"file:{database}").update_query_dict({"mode": "rw", "uri": "true"})


def _sql_for(conn: Connection) -> OutboxSql:
    return outbox_sql(conn.dialect.name, conn.dialect.default_schema_name or "main")


def _translate(url: URL, source: str, what: str, error: sa.exc.DBAPIError) -> SyncdError:
    return source_errors.translate(url, f"source {source}", what, error, _install_hint(url, source))


def _translated(url: URL, source: str, what: str) -> AbstractContextManager[None]:
    return source_errors.translated(url, f"source {source}", what, _install_hint(url, source))


def _install_hint(url: URL, source: str) -> Callable[[], str | None]:
    """For a permanent error: the install hint, if the outbox table is what is missing."""
    return lambda: install_hint(source) if _outbox_missing(url) else None


def _outbox_missing(url: URL) -> bool:
    """Whether the outbox table is gone (asked on a connection of its own)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).has_table(OUTBOX)
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def _json_value(value: Any) -> Any:
    """JSON comes as text (PostgreSQL's jsonb is selected as text): parsed keeping every digit."""
    if isinstance(value, bytes | bytearray):
        value = value.decode()
    return jsonvalue.loads(value) if isinstance(value, str) else value
