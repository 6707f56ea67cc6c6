"""What decoding a Debezium message costs, against a plain event of the same row.

    .venv/bin/python -m bench.debezium_cost

Times ``syncd.events.decode_body`` (JSON parsing included) per message, in CPU time, best of
nine rounds, in one process so the figures compare with each other:

- plain: the wire contract's event, the corpus's 17-column row with values as a target takes them;
- schemaless: Debezium's payload alone (JsonConverter with schemas disabled);
- with schema: the ``{schema, payload}`` message as JsonConverter sends it, its schema compiled
  once and found in the cache;
- compile: the same with the cache emptied before each message (a new schema every time);
- and the cache's lookup against what a canonical-text key (``json.dumps(sort_keys=True)``)
  would cost.
"""

from __future__ import annotations

import json
import time
import timeit
from pathlib import Path

from syncd.debezium import schemas
from syncd.events import ChangeEvent, decode_body

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "debezium" / "events.jsonl"


def best_us(statement: object, number: int) -> float:
    # CPU time, best of 9: the figure least disturbed by other work on a shared machine.
    times = timeit.repeat(statement, number=number, repeat=9, timer=time.process_time)  # type: ignore[arg-type]
    return min(times) / number * 1e6


def main() -> None:
    lines = CORPUS.read_bytes().splitlines()
    wrapped = lines[5]  # the update of row 1: every type, two placeholders
    message = json.loads(wrapped)
    [event] = decode_body(wrapped)
    assert isinstance(event, ChangeEvent)
    plain = json.dumps(
        {
            "op": event.op,
            "before": None,
            "after": event.after,
            "source": message["payload"]["source"],
        },
        default=str,
    ).encode()
    schemaless = json.dumps(message["payload"]).encode()
    schema = message["schema"]
    copy = json.loads(json.dumps(schema))

    def compile_each() -> None:
        schemas.CACHE.clear()
        decode_body(wrapped)

    figures = {
        "plain event": best_us(lambda: decode_body(plain), 2000),
        "Debezium, schemas disabled": best_us(lambda: decode_body(schemaless), 2000),
        "Debezium, with schema (cached)": best_us(lambda: decode_body(wrapped), 2000),
        "Debezium, with schema (compiled each time)": best_us(compile_each, 300),
        "json.loads of the message alone": best_us(lambda: json.loads(wrapped), 2000),
        "cache lookup: schema == cached schema": best_us(lambda: copy == schema, 5000),
        "cache key by json.dumps(sort_keys=True)": best_us(
            lambda: hash(json.dumps(schema, sort_keys=True)), 2000
        ),
    }
    print(
        f"message sizes: plain {len(plain)} B, schemaless {len(schemaless)} B, "
        f"with schema {len(wrapped)} B"
    )
    base = figures["plain event"]
    for what, us in figures.items():
        print(f"{what:45s} {us:8.1f} µs  ({us / base:4.1f}× plain)")


if __name__ == "__main__":
    main()
