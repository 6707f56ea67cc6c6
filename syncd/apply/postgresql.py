"""PostgreSQL specifics: INSERT … ON CONFLICT, timeouts, and SQLSTATE-based classification."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg2
import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.engine import Connection, Engine

from syncd.apply import core
from syncd.apply.classify import Failure, classify_postgresql

__all__ = ["cancel", "classify", "engine", "position_advancer", "position_reader", "upserter"]

_PREPARER = postgresql_dialect.dialect().identifier_preparer  # type: ignore[no-untyped-call]


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
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
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
    table: sa.TableClause, key_columns: Sequence[str], columns: Sequence[str]
) -> core.Upsert:
    quote = _PREPARER.quote
    names = ", ".join(quote(c) for c in columns)
    updates = [c for c in columns if c not in key_columns]
    action = (
        "DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
        if updates
        else "DO NOTHING"
    )
    # Each JSON value goes through its column's type, as a literal would; a JSON object or
    # array lands in a json/jsonb column as itself, in a text column as its JSON text.
    sql = (
        f"INSERT INTO {_name(table)} ({names}) SELECT {names} "
        f"FROM json_populate_recordset(NULL::{_name(table)}, %s::json) "
        f"ON CONFLICT ({', '.join(quote(c) for c in key_columns)}) {action}"
    )

    def upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.exec_driver_sql(sql, (_json(rows),))

    return upsert


def _json(rows: list[dict[str, Any]]) -> str:
    """A batch's rows as one JSON parameter.

    One parameter, however many rows: psycopg2 adapting each value in turn held the GIL for
    ~15% of the daemon's time; json.dumps is C, and PostgreSQL parses the array server-side.
    Rows are unique per key (the applier folds a batch into one write per key), as ON
    CONFLICT DO UPDATE requires.
    """
    return json.dumps(rows, ensure_ascii=False, default=_json_value)


def _json_value(value: Any) -> str:
    """The JSON text of a value JSON has no form for: bytes as bytea's hex input ('\\x0aff'),
    which a bytea column reads back as the very bytes; anything else as its str()."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def _name(table: sa.TableClause) -> str:
    """The table's quoted (schema-qualified) name, with % doubled for psycopg2's placeholders."""
    return _PREPARER.format_table(table).replace("%", "%%")
