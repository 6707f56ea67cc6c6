"""What a source table is, as its database's catalog says: columns, declared types, key.

PostgreSQL is asked directly (``format_type``: ``numeric(12,2)``, not SQLAlchemy's
``NUMERIC(12, 2)``), with a domain read as its base type and an enum as ``text`` (what the
captures send for it); SQLite and MariaDB/MySQL through SQLAlchemy's inspector. The same
words reach the consumer in capture events' ``source.types``, so ``syncd schema`` and
``on_new_column: add`` choose target types from one table (:mod:`syncd.schema.types`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# A column's type as the consumer should see it: a domain as its base type, an enum as text.
_DECLARED = """
    CASE WHEN t.typtype = 'e' THEN 'text'
         WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
         ELSE format_type(t.oid, {modifier}) END"""

PG_COLUMNS = f"""
SELECT a.attname, {_DECLARED.format(modifier="a.atttypmod")}, NOT a.attnotnull
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

PG_PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND i.indisprimary
ORDER BY k.n
"""

# The declared types of the (type OID, type modifier) pairs of a pgoutput Relation message,
# in their order: the columns' types as of the change, not as the catalog says now.
PG_TYPES_OF_OIDS = f"""
SELECT {_DECLARED.format(modifier="c.modifier")}
FROM unnest(%(oids)s::oid[], %(modifiers)s::int[]) WITH ORDINALITY AS c(oid, modifier, n)
JOIN pg_type t ON t.oid = c.oid
ORDER BY c.n
"""


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str  # as the source declares it (see the module's docstring)
    nullable: bool


@dataclass(frozen=True)
class SourceTable:
    dialect: str  # postgresql | sqlite | mysql
    schema: str | None
    name: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def column(self, name: str) -> SourceColumn | None:
        return next((c for c in self.columns if c.name == name), None)


def dialect_of(conn: Connection) -> str:
    name = conn.dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name


def read_table(conn: Connection, qualified: str) -> SourceTable | None:
    """``schema.table`` (or ``table``: PostgreSQL's current schema) as the catalog describes
    it; None if there is no such table."""
    schema, _, name = qualified.rpartition(".")
    dialect = dialect_of(conn)
    if dialect == "postgresql":
        return _postgresql(conn, schema or None, name)
    inspector = sa.inspect(conn)
    if not inspector.has_table(name, schema=schema or None):
        return None
    columns = tuple(
        SourceColumn(c["name"], _declared(conn, c["type"]), bool(c["nullable"]))
        for c in inspector.get_columns(name, schema=schema or None)
    )
    key = inspector.get_pk_constraint(name, schema=schema or None)["constrained_columns"]
    return SourceTable(dialect, schema or None, name, columns, tuple(key))


def _declared(conn: Connection, column_type: sa.types.TypeEngine[object]) -> str:
    if isinstance(column_type, sa.types.NullType):
        return ""  # SQLite: a column declared without a type
    return column_type.compile(dialect=conn.dialect)


def _postgresql(conn: Connection, schema: str | None, name: str) -> SourceTable | None:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if schema is None:
            cursor.execute("SELECT current_schema()")
            (schema,) = cursor.fetchone() or ("public",)
        where = {"schema": schema, "table": name}
        cursor.execute(PG_COLUMNS, where)
        rows: Sequence[tuple[str, str, bool]] = cursor.fetchall()
        if not rows:
            return None
        cursor.execute(PG_PRIMARY_KEY, where)
        key = tuple(row[0] for row in cursor.fetchall())
    finally:
        cursor.close()
    columns = tuple(SourceColumn(n, t, bool(nullable)) for n, t, nullable in rows)
    return SourceTable("postgresql", schema, name, columns, key)
