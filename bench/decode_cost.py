"""The per-event cost of the consumer's hot path without a broker or a database.

Decodes a realistic batch of message bodies, routes every event through a mapping and encodes
the PostgreSQL applier's one JSON parameter — the work a consumer does per event in Python.
Run: ``python -m bench.decode_cost`` (prints µs of CPU per event, best of several rounds:
CPU time, not wall time, so that other work on a shared machine counts less).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from syncd.apply import postgresql
from syncd.events import ChangeEvent, decode_body
from syncd.mapping import load_mappings
from syncd.routing import Router

MAPPING = """mappings:
  - name: orders
    source: {system: shop, table: public.orders}
    target: {database: warehouse, table: orders}
    key: [id]
    columns:
      id: order_id
      customer: customer
      email: {column: email, transform: lower}
      amount: amount
      rate: rate
      placed_at: placed_at
      items: items
"""


def bodies(count: int, per_message: int, fractions: bool = True) -> list[bytes]:
    """Message bodies of ``per_message`` events each: ints, text, decimals, a JSON document.

    Without ``fractions`` the numbers are whole (as many schemas' rows are: ids, counts).
    """
    out = []
    for start in range(0, count, per_message):
        events = [
            {
                "op": "u",
                "before": None,
                "after": {
                    "id": n,
                    "customer": f"Customer {n}",
                    "email": f"Customer{n}@Example.org",
                    "amount": float(f"{n % 1000}.{n % 100:02d}") if fractions else n % 1000,
                    "rate": 0.125 + n / 1e6 if fractions else n % 7,
                    "placed_at": "2026-11-30T12:34:56.789012+00:00",
                    "items": [
                        {"sku": f"S{n % 97}", "qty": n % 5 + 1, "price": 9.99 if fractions else 999}
                    ],
                },
                "source": {"name": "shop", "schema": "public", "table": "orders", "seq": n},
                "ts_ms": 1_764_000_000_000 + n,
            }
            for n in range(start, start + per_message)
        ]
        out.append(json.dumps(events).encode())
    return out


def run_once(messages: list[bytes], router: Router) -> int:
    rows: list[dict[str, Any]] = []
    count = 0
    for body in messages:
        for event in decode_body(body):
            assert isinstance(event, ChangeEvent)
            for change in router.changes_for(event):
                assert change.row is not None
                rows.append(change.row)
            count += 1
    postgresql._json(rows)
    return count


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "orders.yaml").write_text(MAPPING)
        router = Router(load_mappings(Path(directory), ["warehouse"]))
    for fractions in (True, False):
        messages = bodies(20_000, 100, fractions)
        best = float("inf")
        for _ in range(7):
            started = time.process_time()
            count = run_once(messages, router)
            best = min(best, (time.process_time() - started) / count)
        kind = "3 fractional numbers per event" if fractions else "whole numbers only"
        print(f"decode + route + PostgreSQL parameter, {kind}: {best * 1e6:.2f} µs/event")


if __name__ == "__main__":
    main()
