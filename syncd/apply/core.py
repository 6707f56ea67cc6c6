"""What each dialect module hands the SQL applier, and the SQLAlchemy Core versions of it.

A dialect module (``postgresql``, ``sqlite``, ``mysql``) exports ``position_reader``,
``position_advancer`` and ``upserter``, each built once per table and called per batch inside
the batch's transaction. SQLite and MySQL use the Core statements below; PostgreSQL, where
throughput matters most, sends the same statements as driver SQL (``postgresql.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

CHUNK = 500  # keys per IN list (and per SELECT … FOR UPDATE, and rows per DELETE)

# (conn, mapping name, row keys) -> {row key: stored position}
PositionReader = Callable[[Connection, str, Sequence[str]], dict[str, int]]
# (conn, position rows) -> the row keys whose position moved forward
PositionAdvancer = Callable[[Connection, list[dict[str, Any]]], set[str]]
# (conn, target rows, each a dict of the same columns) -> None
Upsert = Callable[[Connection, list[dict[str, Any]]], None]


def position_reader(table: sa.Table) -> PositionReader:
    p = table.c

    def read(conn: Connection, mapping: str, keys: Sequence[str]) -> dict[str, int]:
        stored: dict[str, int] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), CHUNK):
            query = sa.select(p.row_key, p.position).where(
                p.mapping == mapping, p.row_key.in_(ordered[start : start + CHUNK])
            )
            stored.update({row.row_key: row.position for row in conn.execute(query)})
        return stored

    return read


def upserter_from(
    upsert_statement: Callable[[sa.TableClause, Sequence[str], Sequence[str]], Any],
    bind: Callable[[Any], Any] | None = None,
) -> Callable[[sa.TableClause, Sequence[str], Sequence[str]], Upsert]:
    """A dialect's ``upserter``, from its Core ``upsert_statement(table, key, update columns)``.

    The upsert is an executemany of that one statement, built once per set of columns; each
    value goes through ``bind`` (default :func:`bindable`).
    """
    bindable_value = bind or bindable

    def upserter(
        table: sa.TableClause, key_columns: Sequence[str], columns: Sequence[str]
    ) -> Upsert:
        updates = [c for c in columns if c not in key_columns]
        statement = upsert_statement(table, key_columns, updates)

        def upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
            conn.execute(
                statement, [{c: bindable_value(v) for c, v in row.items()} for row in rows]
            )

        return upsert

    return upserter


def bindable(value: Any) -> Any:
    """JSON objects and arrays are stored as their JSON text (json columns parse it)."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
