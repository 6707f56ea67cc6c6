"""A simulated source table and its change-event history, shared by the end-to-end and fault
tests: what a source system would publish, and the exact state a target must end in."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

MAPPING = """
mappings:
  - name: customers
    source: {system: SYSTEM, table: public.customers}
    target: {database: warehouse, table: dim_customer}
    key: [id]
    columns:
      id: customer_id
      name: full_name
      email: {column: email, transform: lower}
      score: score
    on_delete: delete
"""
TABLE = """CREATE TABLE dim_customer (customer_id INTEGER PRIMARY KEY, full_name TEXT,
           email TEXT, score INTEGER CHECK (score IS NULL OR score >= 0))"""

Row = tuple[Any, ...]


@dataclass
class Source:
    """A simulated source table that emits the change events of what is done to it.

    Every create and update carries the full row, so the target must end up equal to the
    newest event of each key, in whatever order the events arrive.
    """

    system: str
    seq: int = 0
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def _emit(self, op: str, before: Any, after: Any, table: str = "customers") -> dict[str, Any]:
        self.seq += 1
        event = {
            "op": op,
            "before": before,
            "after": after,
            "source": {
                "name": self.system,
                "schema": "public",
                "table": table,
                "seq": self.seq,
                "ts_ms": 1764000000000 + self.seq,
            },
        }
        self.events.append(event)
        return event

    def create(self, key: int, op: str = "c") -> dict[str, Any]:
        row = {"id": key, "name": f"N{key}-{self.seq}", "email": f"U{key}@X.org", "score": key}
        self.rows[key] = row
        return self._emit(op, None, dict(row))

    def update(self, key: int) -> dict[str, Any]:
        before = dict(self.rows[key])
        self.rows[key].update(
            name=f"N{key}-{self.seq}", email=f"E{self.seq}@Y.org", score=self.seq % 1000
        )
        return (
            self._emit("u", {"id": key}, dict(self.rows[key]))
            if key % 2
            else self._emit("u", before, dict(self.rows[key]))
        )

    def delete(self, key: int) -> dict[str, Any]:
        before = self.rows.pop(key)
        return self._emit("d", {"id": before["id"]}, None)

    def rejected_update(self, key: int) -> dict[str, Any]:
        """An update of a row to a negative score, which the target's CHECK refuses.

        The target keeps the row as it was, so the expected state does not change. A test must
        not emit later events of ``key``: folded with a later change in one batch, the refused
        value would never be written, and nothing would be rejected.
        """
        return self._emit("u", {"id": key}, dict(self.rows[key], score=-1))

    def expected(self) -> list[Row]:
        return sorted(
            (r["id"], r["name"], r["email"].lower(), r["score"]) for r in self.rows.values()
        )


def random_changes(source: Source, rng: random.Random, keys: int, count: int) -> None:
    """``count`` creates, updates and deletes of keys 1..``keys``."""
    for _ in range(count):
        key = rng.randint(1, keys)
        if key not in source.rows:
            source.create(key, op=rng.choice("cr"))
        elif rng.random() < 0.15:
            source.delete(key)
        else:
            source.update(key)


def random_history(source: Source, keys: int, operations: int, seed: int) -> None:
    rng = random.Random(seed)
    for key in range(1, keys + 1):
        source.create(key, op=rng.choice("cr"))
    random_changes(source, rng, keys, operations)


def as_messages(events: list[dict[str, Any]], rng: random.Random) -> list[Any]:
    """How publishers send them: mostly single events, some arrays of several, some wrapped in
    Debezium's {schema, payload}."""
    messages: list[Any] = []
    i = 0
    while i < len(events):
        roll = rng.random()
        if roll < 0.1:
            size = rng.randint(2, 6)
            messages.append(events[i : i + size])
            i += size
            continue
        messages.append(
            {"schema": {"type": "struct"}, "payload": events[i]} if roll < 0.2 else events[i]
        )
        i += 1
    return messages


# ------------------------------------------------------------------ partial-update histories

PARTIAL_TABLE = """CREATE TABLE ledger (id INTEGER PRIMARY KEY, a BIGINT, b BIGINT, c BIGINT,
                   pos BIGINT)"""
PARTIAL_COLUMNS = ("a", "b", "c")


def partial_mapping(system: str) -> str:
    """The mapping of :class:`PartialSource`'s table; ``pos`` is the position of the event
    that last wrote the row (so a trigger can see a row go back in time)."""
    return f"""
mappings:
  - name: ledger
    source: {{system: {system}, table: public.ledger}}
    target: {{database: warehouse, table: ledger}}
    key: [id]
    set:
      pos: {{from: position}}
    on_delete: delete
"""


@dataclass
class PartialSource:
    """A source whose updates each carry one column only (``after`` = key + that column).

    The target keeps the columns an update does not carry, so it ends equal to the fold of
    the history only if every key's events were applied in order: an older update applied
    after a newer one is refused by the position guard, and its value is lost.
    """

    system: str
    seq: int = 0
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def _emit(self, op: str, before: Any, after: Any) -> dict[str, Any]:
        self.seq += 1
        origin = {"name": self.system, "schema": "public", "table": "ledger", "seq": self.seq}
        if after is not None:
            after = {k: (self.seq if v is None else v) for k, v in after.items()}
        event = {"op": op, "before": before, "after": after, "source": origin}
        self.events.append(event)
        return event

    def create(self, key: int) -> None:
        event = self._emit("c", None, {"id": key, "a": None, "b": None, "c": None})
        self.rows[key] = dict(event["after"], pos=self.seq)

    def update(self, key: int, column: str) -> None:
        self._emit("u", {"id": key}, {"id": key, column: None})
        self.rows[key].update({column: self.seq, "pos": self.seq})

    def delete(self, key: int) -> None:
        self._emit("d", {"id": key}, None)
        del self.rows[key]

    def expected(self) -> list[Row]:
        return sorted((r["id"], r["a"], r["b"], r["c"], r["pos"]) for r in self.rows.values())


def partial_history(system: str, keys: int, operations: int, seed: int) -> PartialSource:
    """Creates of keys 1..``keys``, then ``operations`` one-column updates, a few deletes and
    re-creates; most events are updates, so most keys see long runs of them."""
    rng = random.Random(seed)
    source = PartialSource(system)
    for key in range(1, keys + 1):
        source.create(key)
    for _ in range(operations):
        key = rng.randint(1, keys)
        if key not in source.rows:
            source.create(key)
        elif rng.random() < 0.03:
            source.delete(key)
        else:
            source.update(key, rng.choice(PARTIAL_COLUMNS))
    return source
