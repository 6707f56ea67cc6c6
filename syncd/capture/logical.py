"""PostgreSQL logical decoding capture with the built-in ``pgoutput`` plugin.

``install`` prepares a source database once (a publication of the configured tables and a
logical replication slot, both named ``syncd_<source>``); :class:`LogicalCapture` reads the
slot over a replication connection and hands out whole transactions as Debezium-shaped
change events. The slot keeps every change the capture has not confirmed, across restarts
of the daemon and of PostgreSQL, so nothing committed is lost while syncd is down; the price
is WAL that piles up on the source until syncd confirms it (``uninstall`` drops the slot).

This is the one module that talks to psycopg2's replication API: its errors become
``SourceUnavailable`` (try again later) or ``CaptureError`` (a human must act) here.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from syncd.capture import Captured, CapturedBatch, group_for
from syncd.capture.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    RelationCache,
    Truncate,
    TupleData,
    Update,
    decode,
)
from syncd.errors import CaptureError, SourceUnavailable, SyncdError

__all__ = [
    "LogicalCapture",
    "connect_kwargs",
    "install",
    "publication_name",
    "slot_name",
    "uninstall",
]

NAME_PREFIX = "syncd_"
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1
DEFAULT_SCHEMA = "public"
PROTOCOL_VERSION = "1"
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^a-z0-9_]")
# Tables the replica identity lets pgoutput describe deletes and updates of: with a primary
# key under the default identity ('d'), a chosen unique index ('i'), or every column ('f').
_KEYED_IDENTITIES = frozenset({"i", "f"})

# SQLSTATEs this module decides by.
UNDEFINED_OBJECT = "42704"  # no such slot or publication
OBJECT_IN_USE = "55006"  # another connection reads the slot
# Connection exceptions, insufficient resources, operator intervention (shutdown,
# pg_terminate_backend), system errors: the same request may succeed later.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})

# libpq settings of the replication connection; the URL's query parameters override them.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "client_encoding": "UTF8",  # pgoutput sends text values in the client encoding
    "connect_timeout": 10,
    # A source that vanishes without closing the socket is noticed within about 25 s.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}

Table = tuple[str, str]  # (schema, table)
Row = dict[str, Any]  # column -> JSON-friendly value


def slot_name(source: str) -> str:
    """The replication slot of ``source``: ``syncd_<source>``, as a safe identifier.

    Slot names allow only lowercase letters, digits and ``_``; anything else becomes ``_``.
    """
    safe = _UNSAFE_NAME_CHARACTERS.sub("_", source.lower())
    return (NAME_PREFIX + safe)[:MAX_IDENTIFIER_LENGTH]


def publication_name(source: str) -> str:
    """The publication of ``source``: the same name as its slot."""
    return slot_name(source)


def parse_table(name: str) -> Table:
    """``schema.table`` or ``table`` (in ``public``) as (schema, table)."""
    schema, _, table = name.rpartition(".")
    return (schema or DEFAULT_SCHEMA, table)


def connect_kwargs(url: URL) -> dict[str, Any]:
    """libpq keyword arguments for the database a SQLAlchemy URL names."""
    named = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    options = {key: value for key, value in url.query.items() if isinstance(value, str)}
    present = {key: value for key, value in named.items() if value is not None}
    return {**CONNECTION_DEFAULTS, **present, **options}


def install_hint(source: str) -> str:
    return f"run `syncd capture install -c CONFIG --source {source}`"


# ------------------------------------------------------------------------- install/uninstall


def install(url: URL, source: str, tables: Sequence[str]) -> list[str]:
    """Prepare ``url``'s database for capturing ``tables``; returns what it did, line by line.

    Idempotent: a second run changes nothing, or only the publication's table list.
    The publication is made before the slot because pgoutput looks it up as of each
    change it decodes: a slot older than its publication could not decode its first WAL.
    """
    wanted = sorted({parse_table(table) for table in tables})
    if not wanted:
        raise CaptureError(f"source {source}: no tables to capture; list them in config.yaml")
    with _admin_connection(url) as connection:
        lines = [_check_wal_level(connection)]
        lines += [_check_table(connection, schema, table) for schema, table in wanted]
        lines.append(_ensure_publication(connection, publication_name(source), wanted))
        lines.append(_ensure_slot(connection, slot_name(source)))
    return lines


def uninstall(url: URL, source: str) -> list[str]:
    """Drop ``source``'s slot (so the server stops keeping WAL for it) and publication."""
    with _admin_connection(url) as connection:
        return [
            _drop_slot(connection, slot_name(source)),
            _drop_publication(connection, publication_name(source)),
        ]


@contextmanager
def _admin_connection(url: URL) -> Iterator[Connection]:
    # AUTOCOMMIT: a logical slot cannot be created in a transaction that has written.
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    except sa.exc.DBAPIError as error:
        message = _first_line(error.orig)
        if _is_transient(error.orig):
            raise SourceUnavailable(f"source database {_where(url)}: {message}") from error
        raise CaptureError(f"source database {_where(url)}: {message}") from error
    finally:
        engine.dispose()


def _check_wal_level(connection: Connection) -> str:
    level = connection.exec_driver_sql("SHOW wal_level").scalar_one()
    if level != "logical":
        raise CaptureError(
            f"wal_level is {level}: set `wal_level = logical` in postgresql.conf and restart "
            "PostgreSQL (logical decoding needs it)"
        )
    return "wal_level is logical"


def _check_table(connection: Connection, schema: str, table: str) -> str:
    found = connection.execute(
        sa.text(
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i"
            "  WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p')"
        ),
        {"schema": schema, "table": table},
    ).first()
    if found is None:
        raise CaptureError(f"table {schema}.{table} does not exist in the source database")
    identity, has_primary_key = found
    if not (identity in _KEYED_IDENTITIES or (identity == "d" and has_primary_key)):
        raise CaptureError(
            f"table {schema}.{table} has no primary key, so its updates and deletes cannot "
            f"be captured: add a primary key, or run "
            f"`ALTER TABLE {schema}.{table} REPLICA IDENTITY FULL`"
        )
    return f"table {schema}.{table} can be captured"


def _ensure_publication(connection: Connection, name: str, wanted: list[Table]) -> str:
    listed = ", ".join(f"{schema}.{table}" for schema, table in wanted)
    all_tables = connection.execute(
        sa.text("SELECT puballtables FROM pg_publication WHERE pubname = :name"), {"name": name}
    ).scalar_one_or_none()
    if all_tables is None:
        quoted, tables = _quote(connection, name), _table_list(connection, wanted)
        connection.exec_driver_sql(f"CREATE PUBLICATION {quoted} FOR TABLE {tables}")
        return f"publication {name} created for {listed}"
    if all_tables:
        raise CaptureError(
            f"publication {name} publishes all tables, not the configured ones: "
            f"drop it (DROP PUBLICATION {name}) and install again"
        )
    if _published_tables(connection, name) == wanted:
        return f"publication {name} already publishes {listed}"
    connection.exec_driver_sql(
        f"ALTER PUBLICATION {_quote(connection, name)} SET TABLE {_table_list(connection, wanted)}"
    )
    return f"publication {name} now publishes {listed}"


def _published_tables(connection: Connection, name: str) -> list[Table]:
    rows = connection.execute(
        sa.text("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = :name"),
        {"name": name},
    )
    return sorted((schema, table) for schema, table in rows)


def _ensure_slot(connection: Connection, name: str) -> str:
    found = connection.execute(
        sa.text(
            "SELECT plugin, database, database = current_database() AS here"
            " FROM pg_replication_slots WHERE slot_name = :name"
        ),
        {"name": name},
    ).first()
    if found is None:
        lsn = connection.execute(
            sa.text("SELECT lsn FROM pg_create_logical_replication_slot(:name, 'pgoutput')"),
            {"name": name},
        ).scalar_one()
        return f"replication slot {name} created at {lsn}: changes from now on are captured"
    plugin, database, here = found
    if plugin != "pgoutput" or not here:
        raise CaptureError(
            f"replication slot {name} exists for database {database} with plugin {plugin}; "
            "syncd needs it on this database with pgoutput: give the source another name, "
            "or drop that slot if nothing uses it"
        )
    return f"replication slot {name} already exists"


def _drop_slot(connection: Connection, name: str) -> str:
    found = connection.execute(
        sa.text("SELECT active_pid FROM pg_replication_slots WHERE slot_name = :name"),
        {"name": name},
    ).first()
    if found is None:
        return f"replication slot {name} does not exist"
    if found.active_pid is not None:
        raise CaptureError(_slot_in_use(name, found.active_pid))
    try:
        connection.execute(sa.text("SELECT pg_drop_replication_slot(:name)"), {"name": name})
    except sa.exc.DBAPIError as error:
        if getattr(error.orig, "pgcode", None) == OBJECT_IN_USE:
            raise CaptureError(_slot_in_use(name, None)) from error
        raise
    return f"replication slot {name} dropped: the server no longer keeps WAL for it"


def _slot_in_use(name: str, pid: int | None) -> str:
    reader = f"process {pid}" if pid is not None else "another process"
    return f"replication slot {name} is in use by {reader}: stop the daemon first"


def _drop_publication(connection: Connection, name: str) -> str:
    exists = connection.execute(
        sa.text("SELECT 1 FROM pg_publication WHERE pubname = :name"), {"name": name}
    ).first()
    if exists is None:
        return f"publication {name} does not exist"
    connection.exec_driver_sql(f"DROP PUBLICATION {_quote(connection, name)}")
    return f"publication {name} dropped"


def _quote(connection: Connection, identifier: str) -> str:
    return connection.dialect.identifier_preparer.quote(identifier)


def _table_list(connection: Connection, tables: list[Table]) -> str:
    return ", ".join(f"{_quote(connection, s)}.{_quote(connection, t)}" for s, t in tables)


def _where(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


# ---------------------------------------------------------------------------------- errors


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_transient(error: BaseException | None) -> bool:
    code = getattr(error, "pgcode", None)
    if code is None:
        # No SQLSTATE: the connection failed or broke before the server could say why.
        return isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError | OSError)
    return code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code == OBJECT_IN_USE


def stream_failure(error: BaseException, source: str) -> SyncdError:
    """The syncd error for a psycopg2 (or socket) error on the capture connection."""
    message = _first_line(error)
    code = getattr(error, "pgcode", None)
    if code == UNDEFINED_OBJECT:
        return CaptureError(f"source {source}: {message}: {install_hint(source)}")
    if code == OBJECT_IN_USE:
        return SourceUnavailable(
            f"source {source}: {message}: another connection reads the slot (a previous one "
            "the server has not noticed gone yet, or another syncd capturing this source)"
        )
    if _is_transient(error):
        return SourceUnavailable(f"source {source}: {message}")
    return CaptureError(f"source {source}: {message}")


# ------------------------------------------------------------------------------- the events


@dataclass(frozen=True, slots=True)
class ChangeOrigin:
    """Where and when a change happened: what every event's ``source`` block tells."""

    source: str
    xid: int
    commit_time_ms: int
    lsn: int  # of the change's own WAL record
    captured_ms: int

    def event(
        self, relation: Relation, op: str, before: Row | None, after: Row | None
    ) -> dict[str, Any]:
        source = {
            "name": self.source,
            "schema": relation.namespace,
            "table": relation.name,
            "lsn": self.lsn,
            "txId": self.xid,
            "ts_ms": self.commit_time_ms,
        }
        return {
            "op": op,
            "before": before,
            "after": after,
            "source": source,
            "ts_ms": self.captured_ms,
        }


RowChange = Insert | Update | Delete | Truncate


def change_events(
    change: RowChange, relations: RelationCache, origin: ChangeOrigin
) -> list[Captured]:
    """The events of one decoded change: one per row, or one per table of a TRUNCATE."""
    if isinstance(change, Truncate):
        return [truncate_event(relations.get(oid), origin) for oid in change.relation_oids]
    relation = relations.get(change.relation_oid)
    if isinstance(change, Insert):
        return [row_event(relation, "c", None, relation.row(change.new), origin)]
    before = old_image(relation, change.old_kind, change.old)
    if isinstance(change, Update):
        return [row_event(relation, "u", before, relation.row(change.new), origin)]
    return [row_event(relation, "d", before, None, origin)]


def old_image(relation: Relation, kind: str | None, values: TupleData | None) -> Row | None:
    """``before``: the old full row ('O'), the old key ('K'), or None when not sent."""
    if values is None:
        return None
    return relation.row(values, key_only=kind == "K")


def row_event(
    relation: Relation,
    op: str,
    before: Row | None,
    after: Row | None,
    origin: ChangeOrigin,
) -> Captured:
    event = origin.event(relation, op, before, after)
    key = key_values(relation.key_columns, before, after)
    return Captured(event, group_for(relation.namespace, relation.name, key))


def truncate_event(relation: Relation, origin: ChangeOrigin) -> Captured:
    # No key: a TRUNCATE concerns the whole table, so its group is the table alone.
    event = origin.event(relation, "t", None, None)
    return Captured(event, f"{relation.namespace}.{relation.name}")


def key_values(key_columns: Sequence[str], before: Row | None, after: Row | None) -> list[Any]:
    """The key, from ``after`` (the row as it is now) or else from ``before``."""
    images = [image for image in (after, before) if image is not None]
    return [next((i[c] for i in images if c in i), None) for c in key_columns]


# ------------------------------------------------------------------------------ the capture


@dataclass(slots=True)
class _Transaction:
    xid: int
    commit_time_ms: int
    events: list[Captured] = field(default_factory=list)
    end_lsn: int = 0  # known at its Commit


@dataclass(frozen=True, slots=True)
class _Stream:
    connection: psycopg2.extensions.connection  # a LogicalReplicationConnection
    cursor: psycopg2.extras.ReplicationCursor


class LogicalCapture:
    """Reads ``syncd_<source>``'s slot and hands out whole transactions, in commit order.

    ``poll`` connects on first use and again after a ``SourceUnavailable``; PostgreSQL then
    streams from the slot's confirmed position, so anything not confirmed is sent again.
    Not thread-safe: the runner polls and confirms from one thread.
    """

    def __init__(
        self,
        url: URL,
        source: str,
        tables: Sequence[str],
        max_batch_events: int = 5000,
        status_interval_s: float = 10.0,
    ) -> None:
        self.source = source
        self.tables = sorted({parse_table(table) for table in tables})
        self.slot = slot_name(source)
        self.publication = publication_name(source)
        self._connect_kwargs = connect_kwargs(url)
        self._max_batch_events = max(1, max_batch_events)
        self._status_interval_s = max(1.0, status_interval_s)  # psycopg2 refuses < 1 s
        self._stream: _Stream | None = None
        self._relations = RelationCache()
        self._open: _Transaction | None = None  # begun, its Commit not read yet
        self._flushed_lsn = 0  # the slot may forget everything before this
        self._handed_lsn = 0  # token of the last batch poll handed out

    def poll(self, timeout_s: float) -> CapturedBatch | None:
        deadline = time.monotonic() + timeout_s
        with self._translated_errors():
            cursor = self._cursor()
            while True:
                batch = self._read_batch(cursor)
                if batch is not None:
                    self._handed_lsn = max(self._handed_lsn, batch.token)
                    return batch
                self._release_idle_wal(cursor)
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    return None
                # Wake at least every status interval: read_message sends the feedback due.
                select.select(
                    [cursor.connection], [], [], min(remaining_s, self._status_interval_s)
                )

    def confirm(self, batch: CapturedBatch) -> None:
        lsn = int(batch.token)
        if lsn <= self._flushed_lsn:
            return
        # The broker holds every event of the batch: from here on the slot may forget them.
        # A crash (process death) before the server has this position re-sends these
        # transactions on the next start, never loses them: that is the guarantee, and the
        # consumer's position guard makes the second copy harmless.
        self._flushed_lsn = lsn
        self._report_flushed(force=True)

    def close(self) -> None:
        """Tell the server the confirmed position, then end the replication connection."""
        self._report_flushed(force=True)
        self._disconnect()

    # ----------------------------------------------------------------------- the stream

    def _cursor(self) -> psycopg2.extras.ReplicationCursor:
        if self._stream is None:
            self._stream = self._connect()
        return self._stream.cursor

    def _connect(self) -> _Stream:
        connection = psycopg2.connect(
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            **self._connect_kwargs,
        )
        try:
            cursor = cast(psycopg2.extras.ReplicationCursor, connection.cursor())
            self._check_installed(cursor)
            # start_lsn: the server starts at the slot's confirmed position or at ours,
            # whichever is later (ours is later when a confirm could not reach it).
            cursor.start_replication(
                slot_name=self.slot,
                decode=False,
                start_lsn=self._flushed_lsn,
                status_interval=self._status_interval_s,  # type: ignore[arg-type]
                options={"proto_version": PROTOCOL_VERSION, "publication_names": self.publication},
            )
            # psycopg2's status updates start from 0 on a new cursor: give them ours.
            _send_feedback(cursor, self._flushed_lsn, force=True)
        except BaseException:
            connection.close()
            raise
        self._relations = RelationCache()  # the server announces every relation again
        return _Stream(connection, cursor)

    def _check_installed(self, cursor: psycopg2.extras.ReplicationCursor) -> None:
        """Fail early, with the fix, when ``install`` has not run for the configured tables."""
        cursor.execute(
            "SELECT p.pubname, t.schemaname, t.tablename FROM pg_publication p"
            " LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname"
            " WHERE p.pubname = %s",
            (self.publication,),
        )
        rows = cursor.fetchall()
        if not rows:
            raise CaptureError(
                f"source {self.source}: publication {self.publication} does not exist: "
                f"{install_hint(self.source)}"
            )
        missing = sorted(set(self.tables) - {(row[1], row[2]) for row in rows})
        if missing:
            listed = ", ".join(f"{schema}.{table}" for schema, table in missing)
            raise CaptureError(
                f"source {self.source}: publication {self.publication} does not publish "
                f"{listed}: {install_hint(self.source)}"
            )

    def _disconnect(self) -> None:
        stream, self._stream = self._stream, None
        self._open = None  # its changes come again, from its Begin
        if stream is not None and not stream.connection.closed:
            stream.connection.close()

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except (psycopg2.Error, OSError) as error:
            self._disconnect()
            raise stream_failure(error, self.source) from error
        except SyncdError:
            self._disconnect()
            raise

    # --------------------------------------------------------------------- the batches

    def _read_batch(self, cursor: psycopg2.extras.ReplicationCursor) -> CapturedBatch | None:
        """Whole transactions that are here now, up to about max_batch_events."""
        batch = CapturedBatch(events=[], token=None)
        # The limit is checked between transactions only: a transaction larger than the
        # limit is still one batch, because only whole transactions can be confirmed.
        while len(batch.events) < self._max_batch_events:
            message = cursor.read_message()
            if message is None:
                break
            finished = self._consume(message)
            # Commits at or before the confirmed position were published already.
            if finished is not None and finished.end_lsn > self._flushed_lsn:
                batch.events.extend(finished.events)
                batch.token = finished.end_lsn
        # Transactions without events (none of their changes published) make no batch;
        # their WAL is released by _release_idle_wal once nothing else is pending.
        return batch if batch.events else None

    def _consume(self, message: Any) -> _Transaction | None:
        """Take one message in; at a Commit, return the transaction it finishes."""
        decoded = decode(message.payload)
        if isinstance(decoded, Relation):
            self._relations.add(decoded)
        elif isinstance(decoded, Begin):
            self._open = _Transaction(decoded.xid, decoded.commit_time_ms)
        elif isinstance(decoded, Commit):
            return self._finish(decoded)
        elif isinstance(decoded, Insert | Update | Delete | Truncate):
            self._record(decoded, message.data_start)
        # Type, Origin and logical Message: nothing to publish.
        return None

    def _record(self, change: RowChange, lsn: int) -> None:
        transaction = self._require_open("a change")
        origin = ChangeOrigin(
            self.source, transaction.xid, transaction.commit_time_ms, lsn, _now_ms()
        )
        transaction.events.extend(change_events(change, self._relations, origin))

    def _finish(self, commit: Commit) -> _Transaction:
        transaction = self._require_open("Commit")
        self._open = None
        transaction.end_lsn = commit.end_lsn
        return transaction

    def _require_open(self, what: str) -> _Transaction:
        if self._open is None:
            raise CaptureError(f"source {self.source}: pgoutput sent {what} outside a transaction")
        return self._open

    # ------------------------------------------------------------------------ feedback

    def _release_idle_wal(self, cursor: psycopg2.extras.ReplicationCursor) -> None:
        """With nothing pending, let the slot move up to where the server has got to.

        Nothing pending: every batch handed out is confirmed and no transaction is half
        read, so whatever the server sent up to ``wal_end`` is published or not ours (other
        tables, empty transactions). Never beyond an unconfirmed batch: that would lose it.
        """
        if self._open is not None or self._handed_lsn > self._flushed_lsn:
            return
        wal_end = int(cursor.wal_end)
        if wal_end > self._flushed_lsn:
            self._flushed_lsn = wal_end
            self._report_flushed(force=False)  # goes out with the next status update

    def _report_flushed(self, force: bool) -> None:
        """Tell the server the confirmed position; without ``force``, at the next status.

        psycopg2 sends the status update every status interval (and when the server asks)
        from read_message, so one reported position keeps travelling on its own.
        """
        if self._stream is None:
            return  # the next connection starts from _flushed_lsn and reports it
        try:
            _send_feedback(self._stream.cursor, self._flushed_lsn, force)
        except psycopg2.Error:
            # Not fatal here: the next poll reconnects (and reports the outage) from
            # _flushed_lsn; a crash before then only re-sends.
            self._disconnect()


def _send_feedback(cursor: psycopg2.extras.ReplicationCursor, lsn: int, force: bool) -> None:
    """Record ``lsn`` as written and flushed; ``force`` sends it now, not at the next status."""
    if lsn:
        cursor.send_feedback(  # type: ignore[no-untyped-call]
            write_lsn=lsn, flush_lsn=lsn, reply=False, force=force
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
