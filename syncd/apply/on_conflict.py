"""INSERT … ON CONFLICT … RETURNING, the statements PostgreSQL and SQLite share.

Both take the same SQLAlchemy construct; each dialect module passes its own ``insert``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PositionAdvancer = Callable[[Connection, list[dict[str, Any]]], set[str]]


def upsert_statement(
    insert: Any, table: sa.TableClause, key_columns: Sequence[str], update_columns: Sequence[str]
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


def position_advancer(insert: Any, table: sa.Table) -> PositionAdvancer:
    """Insert a key's position, or move it forward — only where the stored one is older."""
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.mapping, table.c.row_key],
        set_={
            "position": stmt.excluded.position,
            "event_id": stmt.excluded.event_id,
            "deleted": stmt.excluded.deleted,
            "source_ts_ms": stmt.excluded.source_ts_ms,
            "applied_at": sa.func.current_timestamp(),
        },
        where=table.c.position < stmt.excluded.position,
    ).returning(table.c.row_key)

    def advance(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        # executemany of one cached statement: SQLAlchemy sends it as multi-row VALUES pages
        # and gathers RETURNING across them; RETURNING names exactly the keys that moved.
        return set(conn.execute(stmt, rows).scalars())

    return advance
