"""The position guard's table in a target database: its shape, reading, advancing, upgrading.

One row per (mapping, key): the last applied source position. Written in the same
transaction as the rows it guards, so a row and the position it reflects are never seen apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from types import ModuleType

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.engine import Connection

from syncd.apply import core
from syncd.apply.plan import KeyAction
from syncd.change import TABLE_KEY
from syncd.errors import PermanentApplyError
from syncd.mapping import Mapping

log = logging.getLogger(__name__)


def positions_table(name: str) -> sa.Table:
    """The position guard's table: the last applied source position per (mapping, key).

    Deleted keys keep their row (``deleted``), so a stale replay of a create after its delete is
    still recognised as stale. The key is 750 characters: 3,000 bytes in MySQL's utf8mb4, under
    InnoDB's 3,072-byte index limit. MySQL compares it byte for byte (utf8mb4_bin), not by its
    default case-insensitive collation, so keys differing only in case stay apart.
    """
    schema, table = split_table_name(name)
    return sa.Table(
        table,
        sa.MetaData(),
        sa.Column("mapping", _binary_string(100), primary_key=True),
        sa.Column("row_key", _binary_string(650), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(200)),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("source_ts_ms", sa.BigInteger),
        # Written by a change that lacked columns the source could not send (see KeyAction).
        sa.Column("incomplete", sa.Boolean),
        sa.Column(
            "applied_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
        schema=schema,
    )


def split_table_name(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def _binary_string(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql_types.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


class Positions:
    """One target database's positions table, through its dialect's statements."""

    def __init__(self, database: str, name: str, dialect: ModuleType):
        self.database = database
        self.table = positions_table(name)
        self._read: core.PositionReader = dialect.position_reader(self.table)
        self._advance: core.PositionAdvancer = dialect.position_advancer(self.table)

    def create(
        self, transaction: Callable[[], AbstractContextManager[Connection]], attempts: int = 3
    ) -> None:
        """Create the table, or add what an older syncd's lacks; safe to race.

        Daemons started together on a fresh target all find the table missing and all create
        it; the losers' CREATE (or ALTER) fails — PostgreSQL: a unique violation in pg_type,
        MySQL and SQLite: "already exists" — once the winner commits. A loser then accepts the
        winner's table: it looks again and finds nothing left to do. An error that persists
        through every look (no rights, say) is the real one.
        """
        for attempt in range(1, attempts + 1):
            try:
                with transaction() as conn:
                    self.table.create(conn, checkfirst=True)
                    self._add_missing_columns(conn)
                return
            except PermanentApplyError as exc:
                if attempt == attempts:
                    raise
                log.debug("database %s: positions table changed meanwhile: %s", self.database, exc)

    def _add_missing_columns(self, conn: Connection) -> None:
        """Upgrade a positions table made by an older syncd: add the columns it lacks."""
        inspector = sa.inspect(conn)
        table = self.table
        present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                name = conn.dialect.identifier_preparer.format_table(table)
                log.info("database %s: adding column %s to %s", self.database, column.name, name)
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column.name} {kind}")

    def read(self, conn: Connection, mapping: Mapping, keys: Sequence[str]) -> dict[str, int]:
        """The stored position of each of ``keys`` that has one."""
        return self._read(conn, mapping.name, keys)

    def advance(self, conn: Connection, mapping: Mapping, actions: list[KeyAction]) -> set[str]:
        """Move each key's position forward, only where it is still older; the keys moved."""
        rows = [
            {
                "mapping": mapping.name,
                "row_key": a.key,
                "position": a.position,
                "event_id": a.last.event.event_id[:200] if a.last else None,
                "deleted": a.delete,
                "source_ts_ms": a.last.event.source_ts_ms if a.last else None,
                "incomplete": a.incomplete,
            }
            for a in actions
        ]
        return self._advance(conn, rows) if rows else set()

    def incomplete(self, conn: Connection, mapping: Mapping, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` whose live row was written without columns the source lacked."""
        p = self.table.c
        marked: set[str] = set()
        for start in range(0, len(keys), core.CHUNK):
            query = sa.select(p.row_key).where(
                p.mapping == mapping.name,
                p.row_key.in_(keys[start : start + core.CHUNK]),
                p.incomplete.is_(True),
                p.deleted.is_(False),
            )
            marked.update(conn.execute(query).scalars())
        return marked

    def mark_complete(self, conn: Connection, mapping: Mapping, key: str) -> None:
        p = self.table.c
        conn.execute(
            sa.update(self.table)
            .where(p.mapping == mapping.name, p.row_key == key)
            .values(incomplete=False)
        )

    def live_keys_after(self, conn: Connection, mapping: Mapping, position: int) -> Iterable[str]:
        """The keys of live rows set at a position newer than ``position``."""
        p = self.table.c
        return conn.execute(
            sa.select(p.row_key).where(
                p.mapping == mapping.name,
                p.position > position,
                p.row_key != TABLE_KEY,
                p.deleted.is_(False),
            )
        ).scalars()
