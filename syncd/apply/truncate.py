"""A truncate: the source emptied a table, and so does the target — but for newer rows."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd import jsonvalue
from syncd.apply.plan import KeyAction, Verdict, position_guard
from syncd.apply.positions import Positions
from syncd.apply.rows import deleted_at, key_clause
from syncd.apply.targets import Target
from syncd.change import TABLE_KEY, Change


def truncate(conn: Connection, positions: Positions, target: Target, change: Change) -> Verdict:
    """The source emptied the table: so does the target, but for rows set after it.

    A key whose stored position is newer than the truncate (a later change that arrived
    first) keeps its row. The table's position (TABLE_KEY) keeps older changes out.
    """
    mapping = change.mapping
    stored = positions.read(conn, mapping, [TABLE_KEY]).get(TABLE_KEY)
    verdict = position_guard(stored, change.position)
    if verdict is not Verdict.APPLIED:
        return verdict
    action = KeyAction(TABLE_KEY, {}, change.position, delete=True, last=change)
    if TABLE_KEY not in positions.advance(conn, mapping, [action]):
        return Verdict.STALE
    where = _survivors_excluded(conn, positions, target, change)
    soft_column = mapping.on_delete.soft_column
    if mapping.on_delete.action == "delete":
        conn.execute(sa.delete(target.table).where(where))
    elif soft_column:
        column = target.table.c[soft_column]
        stamp = {soft_column: deleted_at(action)}
        conn.execute(sa.update(target.table).where(where, column.is_(None)).values(stamp))
    return Verdict.APPLIED


def _survivors_excluded(
    conn: Connection, positions: Positions, target: Target, change: Change
) -> sa.ColumnElement[bool]:
    mapping = change.mapping
    survivors = [
        KeyAction(
            key,
            mapping.to_target_row(dict(zip(mapping.key, jsonvalue.loads(key), strict=True))),
            0,
        )
        for key in positions.live_keys_after(conn, mapping, change.position)
    ]
    return sa.not_(key_clause(target, survivors)) if survivors else sa.true()
