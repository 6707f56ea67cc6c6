"""What each dialect module hands the SQL applier, and the SQLAlchemy Core versions of it.

A dialect module (``postgresql``, ``sqlite``, ``mysql``) exports ``position_reader``,
``position_advancer`` and ``upserter``, each built once per table and called per batch inside
the batch's transaction. SQLite and MySQL use the Core statements below; PostgreSQL, where
throughput matters most, sends the same statements as driver SQL (``postgresql.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd import jsonvalue

CHUNK = 500  # keys per IN list (and per SELECT … FOR UPDATE, and rows per DELETE)

# (conn, mapping name, row keys) -> {row key: stored position}
PositionReader = Callable[[Connection, str, Sequence[str]], dict[str, int]]
# (conn, position rows) -> the row keys whose position moved forward
PositionAdvancer = Callable[[Connection, list[dict[str, Any]]], set[str]]
# (conn, target rows, each a dict of the same columns) -> None
Upsert = Callable[[Connection, list[dict[str, Any]]], None]
# Target column -> its type as the database describes it (SQLAlchemy's reflected type)
ColumnTypes = Mapping[str, Any]
# value -> what the driver binds for it (one per target column, made from the column's type)
Binder = Callable[[Any], Any]


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
    bind: Callable[[Any], Binder],
) -> Callable[[sa.TableClause, Sequence[str], Sequence[str], ColumnTypes], Upsert]:
    """A dialect's ``upserter``, from its Core ``upsert_statement(table, key, update columns)``.

    The upsert is an executemany of that one statement, built once per set of columns; each
    value goes through ``bind(column type)`` for its column, made once per column.
    """

    def upserter(
        table: sa.TableClause,
        key_columns: Sequence[str],
        columns: Sequence[str],
        types: ColumnTypes,
    ) -> Upsert:
        updates = [c for c in columns if c not in key_columns]
        statement = upsert_statement(table, key_columns, updates)
        binders = {c: bind(types.get(c)) for c in columns}

        def upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
            conn.execute(statement, [{c: binders[c](v) for c, v in row.items()} for row in rows])

        return upsert

    return upserter


def any_column(_column_type: Any) -> Binder:
    """The binder of a dialect whose driver takes every value as it is but JSON documents."""
    return bindable


_BYTEA_HEX = re.compile(r"\\x(?:[0-9a-fA-F]{2})*")


def bytea_bytes(value: Any) -> Any:
    """For a binary column (SQLite BLOB, MariaDB BLOB/VARBINARY): PostgreSQL's hex text of
    bytea (``\\x00ff``, as both captures send it, and as a PostgreSQL target reads it) as
    the bytes; any other value as :func:`bindable` binds it."""
    if type(value) is str and _BYTEA_HEX.fullmatch(value):
        return bytes.fromhex(value[2:])
    return bindable(value)


def bindable(value: Any) -> Any:
    """JSON objects and arrays are stored as their JSON text, every number exact.

    A string is written as it is: in a json column it is the document's text (how syncd's
    captures and Debezium send json), in a text column the text.
    """
    if isinstance(value, dict | list):
        return jsonvalue.dumps_spaced(value)
    return value
