"""Writing a batch's actions to a target table: upserts, deletes and soft deletes.

One write per key (``syncd.apply.plan`` folded the batch), upserts grouped by the columns they
set so that each group is one statement of the dialect's upserter.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.apply import core
from syncd.apply.core import Upsert
from syncd.apply.plan import KeyAction
from syncd.apply.targets import Target
from syncd.mapping import Mapping


class RowWriter:
    """Writes actions through one dialect's statements, its upserts made once per shape."""

    def __init__(self, dialect: ModuleType):
        self._dialect = dialect
        self._upserts: dict[tuple[str, str | None, tuple[str, ...]], Upsert] = {}

    def write(
        self, conn: Connection, mapping: Mapping, target: Target, actions: list[KeyAction]
    ) -> None:
        soft_column = mapping.on_delete.soft_column
        hard = mapping.on_delete.action == "delete"
        if hard:
            delete_rows(conn, target, [a for a in actions if a.delete or a.replace])
        elif soft_column:
            stamps = [a for a in actions if a.delete and not a.row]
            _soft_delete(conn, target, soft_column, stamps)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for action in actions:
            if not action.row or (action.delete and hard):
                continue
            row = dict(action.row)
            row.update(action.target_key)
            if soft_column:
                # Stamped if its newest change is a delete; cleared if it was created again.
                row[soft_column] = deleted_at(action) if action.delete else None
            by_columns[tuple(sorted(row))].append(row)
        for columns, rows in by_columns.items():
            self._upsert(target, columns)(conn, rows)

    def _upsert(self, target: Target, columns: tuple[str, ...]) -> Upsert:
        cache_key = (target.table.name, target.table.schema, columns)
        upsert = self._upserts.get(cache_key)
        if upsert is None:
            upsert = self._dialect.upserter(target.table, target.key, columns, target.types)
            self._upserts[cache_key] = upsert
        return upsert


def key_clause(target: Target, actions: list[KeyAction]) -> sa.ColumnElement[bool]:
    """The rows of ``actions``' keys."""
    columns = [target.table.c[k] for k in target.key]
    if len(columns) == 1:
        return columns[0].in_([a.target_key[target.key[0]] for a in actions])
    keys = [tuple(a.target_key[k] for k in target.key) for a in actions]
    return sa.tuple_(*columns).in_(keys)


def delete_rows(conn: Connection, target: Target, actions: list[KeyAction]) -> None:
    for start in range(0, len(actions), core.CHUNK):
        chunk = actions[start : start + core.CHUNK]
        conn.execute(sa.delete(target.table).where(key_clause(target, chunk)))


def _soft_delete(conn: Connection, target: Target, column: str, actions: list[KeyAction]) -> None:
    for action in actions:
        conn.execute(
            sa.update(target.table)
            .where(key_clause(target, [action]))
            .values({column: deleted_at(action)})
        )


def deleted_at(action: KeyAction) -> str:
    """When the source deleted the row (its commit time), else now; ISO 8601 in UTC."""
    ts = action.last.event.source_ts_ms if action.last else None
    stamp = datetime.fromtimestamp(ts / 1000, UTC) if ts is not None else datetime.now(UTC)
    return stamp.isoformat(sep=" ")
