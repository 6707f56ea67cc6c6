"""What the benchmark sends: a simulated source table's change history and its final state.

Every phase replays the same kind of history — creates and updates of ``customers`` over a
quarter as many keys as events, ``source.seq`` increasing by one per event — so that the
target's final state is known exactly and any wrong, missing or extra row is counted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SOURCE_TABLE = "customers"
SOURCE_SCHEMA = "public"
LATENCY_TABLE = "pings"
TS_BASE_MS = 1_764_000_000_000

# The mapping every syncd phase runs: renames and a transform, as a real mapping would have.
CUSTOMERS_MAPPING = """
  - name: customers
    source: {{system: {system}, table: public.customers}}
    target: {{database: warehouse, table: dim_customer}}
    key: [id]
    columns:
      id: customer_id
      name: full_name
      email: {{column: email, transform: lower}}
      score: score
    on_delete: delete
"""
# The latency probe: one new row per event, so every event leaves its own timestamps behind.
PINGS_MAPPING = """
  - name: pings
    source: {{system: {system}, table: public.pings}}
    target: {{database: warehouse, table: bench_latency}}
    key: [id]
    columns: {{id: id, sent_at: sent_at}}
"""
CUSTOMERS_DDL = """CREATE TABLE dim_customer (customer_id INTEGER PRIMARY KEY, full_name TEXT,
                   email TEXT, score INTEGER)"""

Row = tuple[int, str, str, int]  # (customer_id, full_name, email, score) as the target holds it


def mappings_yaml(system: str, with_pings: bool = False) -> str:
    """The mapping file of a syncd phase reading ``system``'s queue."""
    text = "mappings:" + CUSTOMERS_MAPPING.format(system=system)
    return text + (PINGS_MAPPING.format(system=system) if with_pings else "")


@dataclass
class History:
    """A source table's change events and the rows it holds after them."""

    system: str
    events: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    def expected(self) -> dict[int, Row]:
        """The target's rows after every event applied: the mapping's renames and ``lower``."""
        return {
            key: (key, row["name"], row["email"].lower(), row["score"])
            for key, row in self.rows.items()
        }

    def with_system(self, system: str) -> list[dict[str, Any]]:
        """The same events as if another source system had sent them (another queue)."""
        return [{**e, "source": {**e["source"], "name": system}} for e in self.events]


def customer_history(system: str, events: int, seed: int = 7) -> History:
    """``events`` creates and updates over ``events // 4`` keys, positions 1, 2, 3, …"""
    rng = random.Random(seed)
    keys = max(1, events // 4)
    history = History(system)
    for seq in range(1, events + 1):
        key = rng.randint(1, keys)
        before = history.rows.get(key)
        after = {
            "id": key,
            "name": f"Customer {key} v{seq}",
            "email": f"C{key}.V{seq}@Example.org",
            "score": rng.randint(0, 10_000),
        }
        history.rows[key] = after
        history.events.append(_event(system, "u" if before else "c", before, after, seq))
    return history


def _event(
    system: str, op: str, before: dict[str, Any] | None, after: dict[str, Any], seq: int
) -> dict[str, Any]:
    return {
        "op": op,
        "before": before,
        "after": after,
        "source": {
            "name": system,
            "schema": SOURCE_SCHEMA,
            "table": SOURCE_TABLE,
            "seq": seq,
            "txId": seq,
            "ts_ms": TS_BASE_MS + seq,
        },
        "ts_ms": TS_BASE_MS + seq + 5,
    }


def ping_event(system: str, seq: int, sent_at: float) -> dict[str, Any]:
    """A latency probe: a new row whose ``sent_at`` is the publisher's wall clock."""
    return {
        "op": "c",
        "before": None,
        "after": {"id": seq, "sent_at": sent_at},
        "source": {
            "name": system,
            "schema": SOURCE_SCHEMA,
            "table": LATENCY_TABLE,
            "seq": seq,
            "ts_ms": round(sent_at * 1000),
        },
    }


def group_of(event: dict[str, Any]) -> str:
    """The JMSXGroupID syncd's publisher gives an event: source table and key."""
    source = event["source"]
    row = event["after"] or event["before"]
    return f"{source['schema']}.{source['table']}:[{row['id']}]"


def body(item: Any) -> bytes:
    """A message body as syncd's publisher writes it (compact JSON)."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def in_arrays(events: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """The events as array messages of ``size`` events each (the last may be shorter)."""
    for start in range(0, len(events), size):
        yield list(events[start : start + size])
