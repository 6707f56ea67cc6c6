"""PostgreSQL specifics: INSERT … ON CONFLICT, timeouts, and SQLSTATE-based classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg2
import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.engine import Connection, Engine

from syncd import jsonvalue
from syncd.apply import core
from syncd.apply.classify import Failure, classify_postgresql

__all__ = [
    "binder",
    "cancel",
    "check_row",
    "classify",
    "engine",
    "position_advancer",
    "position_reader",
    "upserter",
]

_PREPARER = postgresql_dialect.dialect().identifier_preparer  # type: ignore[no-untyped-call]


# TCP keepalives for every libpq connection syncd opens (targets, capture and outbox sources):
# a server that vanishes without closing the socket is noticed within about 25 s.
LIBPQ_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def engine(url: str, timeout_s: float) -> Engine:
    timeout_ms = max(1, round(timeout_s * 1000))
    return create_engine(
        url,
        connect_args={
            # The server ends any statement — a lock wait included — past the apply deadline,
            # so a hung statement cannot wedge the daemon; the batch is then retried.
            "options": f"-c statement_timeout={timeout_ms}",
            # A server that does not answer at all is given up on after the same deadline.
            "connect_timeout": max(1, round(timeout_s)),
            **LIBPQ_KEEPALIVES,
        },
    )


def cancel(dbapi_connection: Any) -> None:
    """Cancel the statement running on ``dbapi_connection`` (from another thread)."""
    dbapi_connection.cancel()


def classify(error: BaseException) -> Failure:
    connection_error = isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
    return classify_postgresql(getattr(error, "pgcode", None), connection_error)


def position_reader(table: sa.Table) -> core.PositionReader:
    sql = f"SELECT row_key, position FROM {_name(table)} WHERE mapping = %s AND row_key = ANY(%s)"

    def read(conn: Connection, mapping: str, keys: Sequence[str]) -> dict[str, int]:
        # One array parameter, however many keys: no IN list to build or to parse.
        result = conn.exec_driver_sql(sql, (mapping, list(keys)))
        return {key: position for key, position in result}

    return read


def position_advancer(table: sa.Table) -> core.PositionAdvancer:
    """Insert a key's position, or move it forward — only where the stored one is older."""
    # RETURNING names exactly the keys that moved: a key whose stored position is as new or
    # newer is neither updated nor returned.
    sql = (
        f"INSERT INTO {_name(table)} AS p "
        "(mapping, row_key, position, event_id, deleted, source_ts_ms, incomplete) "
        "SELECT r.mapping, r.row_key, r.position, r.event_id, r.deleted, r.source_ts_ms, "
        "r.incomplete FROM json_to_recordset(%s::json) AS r(mapping text, row_key text, "
        "position bigint, event_id text, deleted boolean, source_ts_ms bigint, "
        "incomplete boolean) "
        "ON CONFLICT (mapping, row_key) DO UPDATE SET position = EXCLUDED.position, "
        "event_id = EXCLUDED.event_id, deleted = EXCLUDED.deleted, "
        "source_ts_ms = EXCLUDED.source_ts_ms, applied_at = CURRENT_TIMESTAMP, "
        # An existing row stays incomplete only while its changes keep lacking columns.
        "incomplete = COALESCE(p.incomplete, false) AND EXCLUDED.incomplete "
        "WHERE p.position < EXCLUDED.position RETURNING row_key"
    )

    def advance(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        return set(conn.exec_driver_sql(sql, (_json(rows),)).scalars())

    return advance


def upserter(
    table: sa.TableClause,
    key_columns: Sequence[str],
    columns: Sequence[str],
    types: core.ColumnTypes,
) -> core.Upsert:
    quote = _PREPARER.quote
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join(_value(quote(c), types.get(c)) for c in columns)
    updates = [c for c in columns if c not in key_columns]
    action = (
        "DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
        if updates
        else "DO NOTHING"
    )
    # Each JSON value goes through its column's type, as a literal would; a JSON object or
    # array lands in a json/jsonb column as itself, in a text column as its JSON text.
    sql = (
        f"INSERT INTO {_name(table)} ({names}) SELECT {values} "
        f"FROM json_populate_recordset(NULL::{_name(table)}, %s::json) "
        f"ON CONFLICT ({', '.join(quote(c) for c in key_columns)}) {action}"
    )

    def upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.exec_driver_sql(sql, (_json(rows),))

    return upsert


def _value(column: str, column_type: Any) -> str:
    """The select-list expression of a column read from json_populate_recordset.

    A JSON string for a json or jsonb column is the document's text (as syncd's captures and
    Debezium send json): it is parsed as a document, so a json column keeps that very text.
    Any other JSON value is the document itself.
    """
    if isinstance(column_type, postgresql_dialect.JSONB):
        return (
            f"CASE WHEN jsonb_typeof({column}) = 'string' "
            f"THEN ({column} #>> '{{}}')::jsonb ELSE {column} END"
        )
    if isinstance(column_type, sa.JSON):
        return (
            f"CASE WHEN json_typeof({column}) = 'string' "
            f"THEN ({column} #>> '{{}}')::json ELSE {column} END"
        )
    return column


binder = core.any_column  # psycopg2/PyMySQL bind a Decimal as its digits


def check_row(row: dict[str, Any], types: core.ColumnTypes) -> str | None:
    """Why ``row`` cannot be written, or None: NaN and ±Infinity fit numeric and float columns.

    (And text ones, as their text.) An integer, JSON or any other column cannot hold them —
    nor their text ('NaN', as capture sends a numeric NaN).
    """
    for column, value in row.items():
        number = jsonvalue.is_non_finite(value)
        if number or jsonvalue.is_non_finite_text(value):
            column_type = types.get(column)
            spelled = jsonvalue.non_finite_text(value) if number else value
            if isinstance(column_type, sa.Numeric | sa.Float | sa.String):
                continue
            if not number and spelled != "NaN" and isinstance(column_type, sa.Date | sa.DateTime):
                continue  # dates and timestamps read the text 'Infinity' and '-Infinity'
            return f"column {column} ({column_type}) cannot hold {spelled}"
    return None


def rows_json(rows: list[dict[str, Any]]) -> str:
    """Rows as the applier sends them to json_populate_recordset (``syncd verify`` too)."""
    return _json(rows)


def _json(rows: list[dict[str, Any]]) -> str:
    """A batch's rows as one JSON parameter, every number with the digits it came with.

    One parameter, however many rows: psycopg2 adapting each value in turn held the GIL for
    ~15% of the daemon's time; the encoder is C, and PostgreSQL parses the array server-side.
    Rows are unique per key (the applier folds a batch into one write per key), as ON
    CONFLICT DO UPDATE requires.
    """
    try:
        return _ENCODER.encode(rows)
    except ValueError:
        # NaN or ±Infinity, which PostgreSQL's JSON parser refuses: sent as the text that
        # numeric and float columns read them from ('NaN', 'Infinity', '-Infinity').
        return _ENCODER.encode([_finite(row) for row in rows])


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {
        column: jsonvalue.non_finite_text(value) if jsonvalue.is_non_finite(value) else value
        for column, value in row.items()
    }


def _json_value(value: Any) -> str:
    """The JSON text of a value JSON has no form for: bytes as bytea's hex input ('\\x0aff'),
    which a bytea column reads back as the very bytes; anything else as its str()."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


# jsonb's spacing and exact numbers (syncd.jsonvalue), and bytes as bytea reads them.
_ENCODER = jsonvalue.spaced_encoder(default=_json_value)


def _name(table: sa.TableClause) -> str:
    """The table's quoted (schema-qualified) name, with % doubled for psycopg2's placeholders."""
    return _PREPARER.format_table(table).replace("%", "%%")
