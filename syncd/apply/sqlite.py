"""SQLite specifics: INSERT … ON CONFLICT, WAL mode, timeouts, result-code classification."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Connection, Engine

from syncd import jsonvalue
from syncd.apply import core
from syncd.apply.classify import Failure, classify_sqlite

__all__ = [
    "binder",
    "cancel",
    "check_row",
    "classify",
    "engine",
    "insert",
    "position_advancer",
    "position_reader",
    "upserter",
]


def engine(url: str, timeout_s: float) -> Engine:
    created = create_engine(url)
    timeout_ms = max(1, round(timeout_s * 1000))

    @event.listens_for(created, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if created.url.database not in (None, "", ":memory:"):
            # WAL lets readers (reports, tests, `sqlite3` in a shell) look while syncd writes.
            cursor.execute("PRAGMA journal_mode=WAL")
        # Waiting for another writer's lock ends at the apply deadline; the batch is retried.
        cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
        cursor.close()

    return created


def cancel(dbapi_connection: Any) -> None:
    """Interrupt the statement running on ``dbapi_connection`` (from another thread)."""
    dbapi_connection.interrupt()


def classify(error: BaseException) -> Failure:
    return classify_sqlite(getattr(error, "sqlite_errorcode", None))


def upsert_statement(
    table: sa.TableClause, key_columns: Sequence[str], update_columns: Sequence[str]
) -> Any:
    stmt = insert(table)
    updates = {c: stmt.excluded[c] for c in update_columns}
    stmt = (
        stmt.on_conflict_do_update(index_elements=list(key_columns), set_=updates)
        if updates
        else stmt.on_conflict_do_nothing(index_elements=list(key_columns))
    )
    # RETURNING makes SQLAlchemy send an executemany of this upsert as multi-row VALUES pages
    # (it does not for ON CONFLICT without RETURNING): one round trip per page instead of one
    # per row. Rows are unique per key within a batch, so a page never touches a row twice.
    return stmt.returning(table.c[key_columns[0]])


def position_advancer(table: sa.Table) -> core.PositionAdvancer:
    """Insert a key's position, or move it forward — only where the stored one is older."""
    stmt = insert(table)
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.c.mapping, table.c.row_key],
        set_={
            "position": stmt.excluded.position,
            "event_id": stmt.excluded.event_id,
            "deleted": stmt.excluded.deleted,
            "source_ts_ms": stmt.excluded.source_ts_ms,
            "applied_at": sa.func.current_timestamp(),
            # An existing row stays incomplete only while its changes keep lacking columns.
            "incomplete": sa.and_(
                sa.func.coalesce(table.c.incomplete, sa.false()), stmt.excluded.incomplete
            ),
        },
        where=table.c.position < stmt.excluded.position,
    ).returning(table.c.row_key)

    def advance(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        # executemany of one cached statement: SQLAlchemy sends it as multi-row VALUES pages
        # and gathers RETURNING across them; RETURNING names exactly the keys that moved.
        return set(conn.execute(upsert, rows).scalars())

    return advance


def binder(column_type: Any) -> core.Binder:
    """How a value is bound for a column of ``column_type``, by the column's SQLite affinity.

    sqlite3 binds no Decimal. A REAL column gets the nearest float (±Infinity too, also
    from their text); any other column the number's exact text, which SQLite keeps as text
    in a TEXT (or untyped) column and converts by its own rules in an INTEGER or NUMERIC one:
    an INTEGER if whole and within 64 bits, else a REAL of 15 significant digits. NaN, which
    SQLite would store as NULL, is the text 'NaN' everywhere; outside REAL columns ±Infinity
    are the text 'Infinity' / '-Infinity' too, as a numeric's text arrives from capture.
    An integer past 64 bits is bound like a Decimal (sqlite3 cannot bind it).
    """
    real = affinity(column_type) == "REAL"
    # A declared BLOB takes bytea's hex text as its bytes (an untyped column, also BLOB
    # affinity, keeps text as text).
    blob = "BLOB" in ("" if column_type is None else str(column_type).upper())

    def bind(value: Any) -> Any:
        kind = type(value)
        if blob and kind is str:
            return core.bytea_bytes(value)
        if isinstance(value, Decimal):
            if value.is_nan() or not (real or value.is_finite()):
                return jsonvalue.non_finite_text(value)
            return float(value) if real else str(value)
        if kind is float and not math.isfinite(value):
            return value if real and not math.isnan(value) else jsonvalue.non_finite_text(value)
        if kind is int and not _INT64_MIN <= value <= _INT64_MAX:
            # sqlite3 raises OverflowError past 64 bits: the digits, as for a Decimal.
            return float(value) if real else str(value)
        if real and kind is str and value in _INFINITIES:
            return float(value)
        return core.bindable(value)

    return bind


_INFINITIES = frozenset({"Infinity", "-Infinity"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def affinity(column_type: Any) -> str:
    """SQLite's affinity of a declared column type (sqlite.org/datatype3.html, 3.1)."""
    declared = "" if column_type is None else str(column_type).upper()
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if declared in ("", "NULL") or "BLOB" in declared:
        return "BLOB"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


upserter = core.upserter_from(upsert_statement, binder)


def check_row(row: dict[str, Any], types: core.ColumnTypes) -> str | None:
    """SQLite holds every value in some form (see ``binder``)."""
    return None


position_reader = core.position_reader
