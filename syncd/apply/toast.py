"""Rows the source could not send whole (PostgreSQL TOAST): columns filled in from elsewhere.

An update that left a TOASTed column unchanged does not carry it. Two repairs: a key change
takes the missing columns from the row it moves (``carry_over``), and a row created by such an
update is completed by its snapshot event when that comes (``complete_rows``).
"""

from __future__ import annotations

from types import ModuleType

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.apply.plan import KeyAction
from syncd.apply.positions import Positions
from syncd.apply.rows import key_clause
from syncd.apply.targets import Target
from syncd.change import Change


def carry_over(
    conn: Connection, target: Target, change: Change, actions: dict[str, KeyAction]
) -> None:
    """A key change that lacks columns (TOAST) takes them from the row it moves.

    From this batch's earlier changes of the old key if they set them, else from the old
    row as the target holds it.
    """
    assert change.moved_from is not None
    action = actions[change.key]
    missing = [c for c in change.unavailable if c not in action.row]
    old = actions.get(change.moved_from.key)
    values = {c: old.row[c] for c in missing if old is not None and c in old.row}
    rest = [c for c in missing if c not in values and c in target.columns]
    if rest:
        where = key_clause(target, [KeyAction("", change.moved_from.target_key, 0)])
        query = sa.select(*(target.table.c[c] for c in rest)).where(where)
        found = conn.execute(query).first()
        if found is not None:
            values.update(zip(rest, found, strict=True))
    for column, value in values.items():
        action.row.setdefault(column, value)
    if all(values.get(c) is not None for c in missing):
        action.incomplete = False


def complete_rows(
    conn: Connection,
    positions: Positions,
    target: Target,
    dialect: ModuleType,
    changes: list[Change],
) -> None:
    """Fill the columns an incomplete row lacks from its (older) snapshot event.

    An update that left a TOASTed column unchanged does not carry it; when that update
    created the row (the row predates the stream, and its snapshot event came later), the
    column is NULL in the target. The snapshot event is then older than the row, so it does
    not apply — but its value of that column is the current one (an update that changed
    the column would have carried it). Only NULL columns of rows marked incomplete are
    filled, and the mark goes.
    """
    mapping = changes[0].mapping
    marked = positions.incomplete(conn, mapping, [c.key for c in changes])
    for change in changes:
        if change.key not in marked or not change.row:
            continue
        fill = {
            column: sa.func.coalesce(
                target.table.c[column], dialect.binder(target.types.get(column))(value)
            )
            for column, value in change.row.items()
            if column not in target.key and column in target.columns
        }
        action = KeyAction(change.key, change.target_key, 0)
        if fill:
            conn.execute(sa.update(target.table).where(key_clause(target, [action])).values(fill))
        positions.mark_complete(conn, mapping, change.key)
        marked.discard(change.key)
