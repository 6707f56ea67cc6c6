"""``on_new_column: add``: the target gains the columns the source has gained.

The router marks a change whose row carries columns its target table lacks (a mirror
mapping's source added a column) with :class:`NewColumn`\\ s; the applier, before it applies
such a batch, calls :func:`add_columns`, reflects the table again and applies the changes as
usual. The column's type is the one the source declares — capture events name each column's
type in ``source.types`` — through the type table of :mod:`syncd.schema.types`; an event that
declares none (a published one) gets a safe type for the value it carries
(:func:`syncd.schema.types.json_type`).

Once across many daemons: each tries ``ALTER TABLE … ADD COLUMN``; one wins, and a loser's
statement fails (PostgreSQL ``duplicate_column``, MariaDB 1060, SQLite "duplicate column
name") once the winner committed — the loser then looks at the table again, finds the column
and goes on. A failure that leaves the column missing is the real one (no rights, a type the
target does not have): the changes that needed it are dead-lettered, their neighbours applied.

Every column syncd adds is logged and counted (:data:`CHANGES`, which the metrics show as
``syncd_schema_changes_total{database, table, change}``). Nothing is ever dropped or altered:
a column dropped or renamed at the source stays in the target with what it held.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.change import NewColumn
from syncd.errors import PermanentApplyError
from syncd.schema.types import NoSafeType

if TYPE_CHECKING:
    from syncd.change import Change

log = logging.getLogger(__name__)


class SchemaChanges:
    """How many schema changes syncd made, by (database, table, change): what
    ``syncd_schema_changes_total`` shows. Counted by whichever thread makes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def count(self, database: str, table: str, change: str) -> None:
        with self._lock:
            self._counts[(database, table, change)] += 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


CHANGES = SchemaChanges()  # the process's: appliers come and go with reloads, counts stay


def wanted_columns(changes: Iterable[Change]) -> dict[str, dict[str, NewColumn]]:
    """Per target table (as the mappings write it): the new columns its changes carry, the
    first change's word on each column's type."""
    wanted: dict[str, dict[str, NewColumn]] = {}
    for change in changes:
        if change.new_columns:
            columns = wanted.setdefault(change.mapping.target_table, {})
            for name, column in change.new_columns.items():
                if _better(column, columns.get(name)):
                    columns[name] = column
    return wanted


def _better(column: NewColumn, current: NewColumn | None) -> bool:
    """A declared type beats a guess from a value; a value beats a null."""
    if current is None:
        return True
    if current.source_type is not None:
        return False
    return column.source_type is not None or current.value is None


def add_columns(
    engine: Engine, database: str, table: str, columns: Mapping[str, NewColumn]
) -> list[str]:
    """Add to ``table`` those of ``columns`` it lacks; the ones this call added.

    PermanentApplyError if a column cannot be added (no safe type, or the target refused and
    the column is still missing). Driver errors other than those propagate for the caller's
    translation (an outage is retried like any).
    """
    dialect = _dialect_name(engine)
    schema, _, name = table.rpartition(".")
    present = _present(engine, name, schema or None)
    added: list[str] = []
    for column, new in columns.items():
        if column in present:
            continue
        try:
            kind = new.target_type(dialect)
        except NoSafeType as exc:
            raise PermanentApplyError(
                f"database {database}: {table} has no column {column}, and on_new_column: add "
                f"cannot add it: {exc}; add the column yourself, then replay the dead letters"
            ) from exc
        if add_column(engine, database, table, column, kind):
            added.append(column)
    return added


def add_column(engine: Engine, database: str, table: str, column: str, kind: str) -> bool:
    """``ALTER TABLE table ADD COLUMN column kind``; False if another writer added it first."""
    schema, _, name = table.rpartition(".")
    with engine.connect() as conn:
        statement = add_column_statement(conn, table, column, kind)
        try:
            with conn.begin():
                conn.exec_driver_sql(statement)
        except sa.exc.DBAPIError:
            if column in _present(engine, name, schema or None):
                log.info(
                    "database %s: column %s of %s was added meanwhile by another writer",
                    database,
                    column,
                    table,
                )
                return False
            raise
    log.warning("database %s: schema change: %s", database, statement)
    CHANGES.count(database, table, "add_column")
    return True


def add_column_statement(conn: Connection, table: str, column: str, kind: str) -> str:
    """The ALTER TABLE text, every name quoted as the target quotes it."""
    quote = conn.dialect.identifier_preparer
    schema, _, name = table.rpartition(".")
    qualified = (quote.quote_schema(schema) + "." if schema else "") + quote.quote(name)
    return f"ALTER TABLE {qualified} ADD COLUMN {quote.quote(column)} {kind}"


def _present(engine: Engine, name: str, schema: str | None) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(name, schema=schema)}


def _dialect_name(engine: Engine) -> str:
    name = engine.dialect.name
    return "mysql" if name in ("mysql", "mariadb") else name
