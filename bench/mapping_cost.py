"""``python -m bench.mapping_cost``: what a filter and a transform chain cost per event.

Routes the same events (decoded once) through mappings that differ only in what is measured
— a plain rename, plus DESIGN.md's filter, plus its transform chain, sha256, cast and ``set:``
— best of several rounds, in one process, so the differences are ratios of one run.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
import time
from pathlib import Path

from syncd.events import ChangeEvent, decode_body
from syncd.mapping import Mapping, load_mappings
from syncd.routing import Router

EVENTS = 20_000
ROUNDS = 7
BASE = """
  - name: {name}
    source: {{system: crm, table: public.customers}}
    target: {{database: warehouse, table: t}}
    key: [id]
"""
VARIANTS = {
    "rename": "    columns: {id: customer_id, name: full_name, email: email, signup: signup}\n",
    "rename + where": (
        """    where: "country in ('DE', 'FR') and status <> 'closed'"\n"""
        "    columns: {id: customer_id, name: full_name, email: email, signup: signup}\n"
    ),
    "rename + chain": (
        "    columns:\n"
        "      id: customer_id\n"
        "      name: {column: full_name, transform: [trim, upper]}\n"
        "      email: {column: email_hash, transform: sha256}\n"
        "      signup: {column: signed_up_on, type: date}\n"
        "    set: {region: EU, synced_from: {from: source_table}}\n"
    ),
}


def _events() -> list[ChangeEvent]:
    events = []
    for seq in range(1, EVENTS + 1):
        after = {
            "id": seq,
            "name": f"  customer {seq} ",
            "email": f"c{seq}@example.org",
            "signup": "2024-02-29",
            "country": "DE" if seq % 3 else "US",
            "status": "open",
        }
        body = {"op": "u", "after": after, "source": {"name": "crm", "schema": "public",
                "table": "customers", "seq": seq}}  # fmt: skip
        [event] = decode_body(json.dumps(body).encode())
        assert isinstance(event, ChangeEvent)
        events.append(event)
    return events


def _mapping(directory: Path, label: str, body: str) -> Mapping:
    name = label.replace(" + ", "_").replace(" ", "_")
    text = "mappings:\n" + BASE.format(name=name) + body
    (directory / f"{name}.yaml").write_text(textwrap.dedent(text))
    return next(m for m in load_mappings(directory, ["warehouse"]) if m.name == name)


def main() -> None:
    events = _events()
    with tempfile.TemporaryDirectory() as folder:
        mappings = {label: _mapping(Path(folder), label, body) for label, body in VARIANTS.items()}
    cost: dict[str, float] = {}
    for label, mapping in mappings.items():
        router = Router([mapping])
        best = float("inf")
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for event in events:
                router.changes_for(event)
            best = min(best, time.perf_counter() - started)
        cost[label] = best / EVENTS * 1e6
    base = cost["rename"]
    for label, micros in cost.items():
        extra = "" if label == "rename" else f"  (+{micros - base:.2f} µs)"
        print(f"{label:16} {micros:6.2f} µs/event{extra}")


if __name__ == "__main__":
    main()
