"""PostgreSQL logical decoding capture with the built-in ``pgoutput`` plugin.

``install`` (in :mod:`syncd.capture.logical_setup`, re-exported here) prepares a source
database once (a publication of the configured tables and a logical replication slot, both
named ``syncd_<source>``); :class:`LogicalCapture` reads the
slot over a replication connection and hands out whole transactions as Debezium-shaped
change events. The slot keeps every change the capture has not confirmed, across restarts
of the daemon and of PostgreSQL, so nothing committed is lost while syncd is down; the price
is WAL that piles up on the source until syncd confirms it (``uninstall`` drops the slot).

This is the one module that talks to psycopg2's replication API: its errors become
``SourceUnavailable`` (try again later) or ``CaptureError`` (a human must act) here.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from sqlalchemy.engine import URL

from syncd.apply.postgresql import LIBPQ_KEEPALIVES
from syncd.capture import Captured, CapturedBatch, group_for
from syncd.capture.logical_setup import (
    OBJECT_IN_USE,
    UNDEFINED_OBJECT,
    install,
    install_hint,
    is_transient,
    parse_table,
    publication_name,
    slot_name,
    uninstall,
)
from syncd.capture.pgoutput import (
    UNCHANGED_TOAST,
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
from syncd.errors import CaptureError, SourceUnavailable, SyncdError, first_line
from syncd.schema.catalog import PG_TYPES_OF_OIDS

__all__ = [
    "LogicalCapture",
    "connect_kwargs",
    "install",
    "publication_name",
    "slot_name",
    "uninstall",
]

PROTOCOL_VERSION = "1"

# libpq settings of the replication connection; the URL's query parameters override them.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "client_encoding": "UTF8",  # pgoutput sends text values in the client encoding
    "connect_timeout": 10,
    **LIBPQ_KEEPALIVES,
}

Row = dict[str, Any]  # column -> JSON-friendly value


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


# ---------------------------------------------------------------------------------- errors


def stream_failure(error: BaseException, source: str) -> SyncdError:
    """The syncd error for a psycopg2 (or socket) error on the capture connection."""
    message = first_line(error)
    code = getattr(error, "pgcode", None)
    if code == UNDEFINED_OBJECT:
        return CaptureError(f"source {source}: {message}: {install_hint(source)}")
    if code == OBJECT_IN_USE:
        return SourceUnavailable(
            f"source {source}: {message}: another connection reads the slot (a previous one "
            "the server has not noticed gone yet, or another syncd capturing this source)"
        )
    if is_transient(error):
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
GroupKeys = Mapping[int, tuple[str, ...]]  # relation OID -> the columns that group its rows

# A relation's primary key, in column order: the order pgoutput flags key columns in under
# the default identity, so a row keeps its group when the table's identity changes.
PRIMARY_KEY_QUERY = (
    "SELECT a.attname FROM pg_index i"
    " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
    " WHERE i.indrelid = %(oid)s AND i.indisprimary ORDER BY a.attnum"
)


def group_columns(relation: Relation, primary_key: Sequence[str]) -> tuple[str, ...]:
    """The columns whose values group ``relation``'s changes (``primary_key`` may be empty).

    Under REPLICA IDENTITY FULL pgoutput flags every column as key: grouped by all of them,
    a row would change group with every update and lose its per-key order, so the primary
    key groups it when there is one (every change under FULL carries the whole row, key
    included). Otherwise the flagged columns: the primary key under the default identity,
    the index under USING INDEX (a delete carries those columns only, so they must group it,
    even when the table also has a primary key), every column under FULL without a key.
    """
    names = {column.name for column in relation.columns}
    if relation.replica_identity == "f" and primary_key and names.issuperset(primary_key):
        return tuple(primary_key)
    return relation.key_columns


def change_events(
    change: RowChange, relations: RelationCache, group_keys: GroupKeys, origin: ChangeOrigin
) -> list[Captured]:
    """The events of one decoded change: one per row, or one per table of a TRUNCATE."""
    if isinstance(change, Truncate):
        return [truncate_event(relations.get(oid), origin) for oid in change.relation_oids]
    relation = relations.get(change.relation_oid)
    keys = group_keys.get(relation.oid, relation.key_columns)
    if isinstance(change, Insert):
        return [row_event(relation, keys, "c", None, relation.row(change.new), origin)]
    before = old_image(relation, change.old_kind, change.old)
    if isinstance(change, Update):
        captured = row_event(relation, keys, "u", before, relation.row(change.new), origin)
        unavailable = [
            column.name
            for column, value in zip(relation.columns, change.new, strict=True)
            if value is UNCHANGED_TOAST
        ]
        if unavailable:
            # Left out of `after`, and named: a target that never had the row (it predates
            # the stream) can take these columns from the row's snapshot event later.
            captured.event["unavailable"] = unavailable
        return [captured]
    return [row_event(relation, keys, "d", before, None, origin)]


def old_image(relation: Relation, kind: str | None, values: TupleData | None) -> Row | None:
    """``before``: the old full row ('O'), the old key ('K'), or None when not sent."""
    if values is None:
        return None
    return relation.row(values, key_only=kind == "K")


def row_event(
    relation: Relation,
    key_columns: Sequence[str],
    op: str,
    before: Row | None,
    after: Row | None,
    origin: ChangeOrigin,
) -> Captured:
    event = origin.event(relation, op, before, after)
    key = key_values(key_columns, before, after)
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
    final_lsn: int = 0  # of its commit record, known at its Begin


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
        self._group_keys: dict[int, tuple[str, ...]] = {}  # relation OID -> group columns
        # Relation OID -> column -> declared type: every event's source.types (what the
        # consumer's on_new_column: add goes by), from the Relation message's type OIDs.
        self._types: dict[int, dict[str, str]] = {}
        # A plain connection for catalog lookups: the replication one streams, it cannot ask.
        self._catalog: psycopg2.extensions.connection | None = None
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
                if not self._wait_for_wal(cursor, deadline):
                    return None

    def _wait_for_wal(self, cursor: psycopg2.extras.ReplicationCursor, deadline: float) -> bool:
        """Nothing to read: release idle WAL, then wait for more until ``deadline`` (monotonic);
        False once it has passed."""
        self._release_idle_wal(cursor)
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return False
        # Wake at least every status interval: read_message sends the feedback due.
        select.select([cursor.connection], [], [], min(remaining_s, self._status_interval_s))
        return True

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
        self._group_keys = {}
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
        catalog, self._catalog = self._catalog, None
        self._open = None  # its changes come again, from its Begin
        for connection in (stream.connection if stream else None, catalog):
            if connection is not None and not connection.closed:
                connection.close()

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
            # A new Relation message (first change of the session, or after ALTER TABLE)
            # refreshes the key too: the primary key may have changed with the table.
            self._group_keys[decoded.oid] = self._group_columns(decoded)
            self._types[decoded.oid] = self._declared_types(decoded)
        elif isinstance(decoded, Begin):
            self._open = _Transaction(
                decoded.xid, decoded.commit_time_ms, final_lsn=decoded.final_lsn
            )
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
        events = change_events(change, self._relations, self._group_keys, origin)
        types = self._types.get(getattr(change, "relation_oid", -1))
        if types:
            for captured in events:
                captured.event["source"]["types"] = types
        transaction.events.extend(events)

    def _declared_types(self, relation: Relation) -> dict[str, str]:
        """Each column's type as of the Relation message (not as the catalog says now: a
        backlog may hold changes from before an ALTER), in format_type's words."""
        with self._catalog_connection().cursor() as cursor:
            cursor.execute(
                PG_TYPES_OF_OIDS,
                {
                    "oids": [c.type_oid for c in relation.columns],
                    "modifiers": [c.type_modifier for c in relation.columns],
                },
            )
            declared = [text for (text,) in cursor.fetchall()]
        if len(declared) != len(relation.columns):  # a type dropped since: no word on any
            return {}
        return {c.name: text for c, text in zip(relation.columns, declared, strict=True)}

    def _group_columns(self, relation: Relation) -> tuple[str, ...]:
        # Only FULL needs the catalog: otherwise the flagged columns are the group's already.
        if relation.replica_identity != "f":
            return relation.key_columns
        # The catalog as it is now, not as of the change: a primary key added or dropped
        # since then groups the change already, which only an ALTER during a backlog shows.
        with self._catalog_connection().cursor() as cursor:
            cursor.execute(PRIMARY_KEY_QUERY, {"oid": relation.oid})
            primary_key = [name for (name,) in cursor.fetchall()]
        return group_columns(relation, primary_key)

    def _catalog_connection(self) -> psycopg2.extensions.connection:
        if self._catalog is None or self._catalog.closed:
            self._catalog = psycopg2.connect(**self._connect_kwargs)
            self._catalog.autocommit = True  # no transaction left open between lookups
        return self._catalog

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
