"""``syncd verify --repair``: a corrective event per differing key, through the normal path.

Each event carries the key's current source row (an update), or a delete where the source has
no such row, and reaches the target like any other change: through the source's queue, the
consumer's routing, the mapping (filter, soft delete) and the position guard. What makes it
safe with the stream running is its position.

**Outbox sources.** The event is written into the outbox itself (:func:`write_event`), in one
transaction with a share lock on the source row: a writer of that row still in flight has
been waited for (its change is in the row read, and its outbox id is lower), and a later one
waits for the event's commit (its id will be higher). The relay publishes outbox rows in id
order, so the event lands after every change it includes and before every change it lacks.

**Logical sources.** The WAL cannot be written to as a row change, so the event is published
to the queue at position ``S + 1``, where ``S`` is the position the target holds for the key
(``syncd_positions``; a truncate's position counts too). It wins over the stale target state
(``S``). It never hides a newer change: a change of the key not yet committed when the row was
read comes after the target's ``S`` (row locks order one key's writers, and ``S`` is
committed), so its WAL record is at least ``S`` plus one record (24 bytes and more) — above
``S + 1``; and a change committed before the read is in the row the event carries.

A delete for a key the source lacks cannot lock a row; an insert of that key committing in
between may be hidden. Verify compares every repaired key again afterwards and repairs what
still differs, a bounded number of times (``REPAIR_ROUNDS``), so such a race heals too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.apply.positions import positions_table
from syncd.capture import Captured, group_for
from syncd.capture.outbox import write_event
from syncd.capture.runner import publish_captured
from syncd.capture.snapshot import table_reader
from syncd.change import TABLE_KEY, key_text
from syncd.errors import MappingApplyError
from syncd.publisher import Publisher
from syncd.verify.compare import key_object
from syncd.verify.plan import ALIAS, keys_list
from syncd.verify.sides import Sides

log = logging.getLogger(__name__)

REPAIR_ROUNDS = 3


def repair_keys(
    sides: Sides,
    keys: Iterable[str],
    publisher: Publisher,
    positions: str,
    outbox_engine: Engine | None,
) -> int:
    """Write a corrective event for each of ``keys``; returns how many were written."""
    wanted = sorted(keys)
    if not wanted:
        return 0
    if sides.plan.source.capture == "outbox":
        assert outbox_engine is not None
        return _repair_outbox(sides, wanted, outbox_engine)
    return _repair_logical(sides, wanted, publisher, positions)


def _repair_outbox(sides: Sides, keys: list[str], engine: Engine) -> int:
    plan = sides.plan
    origin = {"schema": plan.source_schema, "table": plan.source_table}
    written = 0
    with engine.connect() as conn:
        reader = table_reader(conn, plan.source, plan.qualified_source)
        conn.commit()
        sql = sa.text(
            f"SELECT {', '.join(reader.values)} FROM {plan.source_name} AS {ALIAS} "
            f"WHERE ({plan.source_keys()}) IN ({keys_list(plan.source_key_types())}) "
            f"FOR SHARE OF {ALIAS}"
        )
        for key in keys:
            # One short transaction per key: the share lock is held from the read to the
            # outbox row's commit, and no longer.
            with conn.begin():
                found = conn.execute(sql, {"keys": f"[{key}]"}).all()
                if found:
                    event = {"op": "u", "before": None, "after": reader.to_row(found[0])}
                else:
                    event = {"op": "d", "before": _key_row(plan, key), "after": None}
                write_event(conn, plan.source.name, {**event, "source": origin})
            written += 1
    return written


def _repair_logical(sides: Sides, keys: list[str], publisher: Publisher, positions: str) -> int:
    plan = sides.plan
    assert sides.reader is not None
    rows = sides.source_rows(keys)
    row_keys = {}
    for key in keys:
        row = rows.get(key)
        row_keys[key] = key_text(_source_key(plan.mapping, row if row else _key_row(plan, key)))
    stored = _stored_positions(sides.target, positions, plan.mapping.name, row_keys.values())
    floor = stored.get(TABLE_KEY, 0)
    now_ms = time.time_ns() // 1_000_000
    events = []
    for key in keys:
        position = max(stored.get(row_keys[key], 0), floor) + 1
        row = rows.get(key)
        before = None if row else _key_row(plan, key)
        image = row if row else before
        assert image is not None
        group_values = [image.get(c) for c in sides.reader.group]
        if None in group_values:
            group_values = list(_source_key(plan.mapping, image))
        group = group_for(plan.source_schema, plan.source_table, group_values)
        event = {
            "op": "u" if row else "d",
            "before": before,
            "after": row,
            "source": {
                "name": plan.source.name,
                "schema": plan.source_schema,
                "table": plan.source_table,
                "lsn": position,
                "ts_ms": now_ms,
            },
            "ts_ms": now_ms,
            "id": f"verify:{group}@{position}",
        }
        events.append(Captured(event, group))
    return publish_captured(publisher, plan.source.queue, events)


def _source_key(mapping: Any, row: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return tuple(mapping.key_of(row))
    except MappingApplyError:
        return tuple(row.get(column) for column in mapping.key)


def _key_row(plan: Any, key: str) -> dict[str, Any]:
    """The source key columns of a key text (for a delete's ``before``)."""
    return key_object(key, plan.mapping.key)


def _stored_positions(
    conn: Connection, positions: str, mapping: str, row_keys: Iterable[str]
) -> dict[str, int]:
    """The positions the target holds for ``row_keys`` (and the table's truncate position)."""
    table = positions_table(positions)
    query = sa.select(table.c.row_key, table.c.position).where(
        table.c.mapping == mapping, table.c.row_key.in_([TABLE_KEY, *row_keys])
    )
    return {str(row_key): int(position) for row_key, position in conn.execute(query)}
