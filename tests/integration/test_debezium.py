"""Debezium PostgreSQL-connector messages (tests/data/debezium/), as a Kafka-to-STOMP bridge
would forward them, through the real broker to `syncd run`: every target value exact, in every
target dialect, and nothing dead-lettered."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from tests.harness import Daemon, StompClient, write_config
from tests.integration.test_metrics import scrape
from tests.services import Broker, free_port, wait_until

CORPUS = Path(__file__).parent.parent / "data" / "debezium"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
MAPPING = """
mappings:
  - name: items
    source: {system: shop, table: public.items}
    target: {database: warehouse, table: items}
    key: [id]
"""


def dialect_of(url: str) -> str:
    backend = sa.engine.make_url(url).get_backend_name()
    return {"mysql": "mariadb"}.get(backend, backend)


def expected_rows(dialect: str) -> list[dict[str, Any]]:
    overrides = EXPECTED["per_dialect"][dialect]
    return [
        {**row, **overrides.get(key, {})}
        for key, row in sorted(EXPECTED["rows"].items(), key=lambda item: int(item[0]))
    ]


def shown(value: Any) -> Any:
    """A value read back from the target, as expected.json spells it."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):  # PyMySQL's TIME
        whole = int(value.total_seconds())
        text = f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
        return text + (f".{value.microseconds:06d}" if value.microseconds else "")
    if isinstance(value, bytes | memoryview):
        return "hex:" + bytes(value).hex()
    if isinstance(value, UUID):
        return str(value)
    return value


def target_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql("SELECT * FROM items ORDER BY id")
        return [{c: shown(v) for c, v in row._mapping.items()} for row in result]


def test_debezium_stream_lands_exactly_and_nothing_is_dead_lettered(
    broker: Broker, target_url: str, tmp_path: Path
) -> None:
    dialect = dialect_of(target_url)
    engine = sa.create_engine(target_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(EXPECTED["tables"][dialect])
    port = free_port()
    dlq = f"/queue/syncd.DLQ.debezium.{dialect}"
    queue = "/queue/syncd.shop"
    config = write_config(
        tmp_path,
        broker.port,
        target_url,
        MAPPING,
        dead_letter_queue=dlq,
        extra=f'metrics: {{listen: "127.0.0.1:{port}"}}\n',
    )
    client = StompClient(broker.port)
    daemon = Daemon(config).start()
    try:
        for line in (CORPUS / "events.jsonl").read_bytes().splitlines():
            client.send(queue, line)
        client.send(queue, b'{"schema":null,"payload":null}')  # a tombstone with its envelope
        client.flush()
        expected = expected_rows(dialect)
        try:
            wait_until(
                lambda: target_rows(engine) == expected, 60, "the target to equal the corpus"
            )
        except AssertionError:
            assert client.drain(dlq, idle_s=1.0) == [], "dead-lettered"
            assert target_rows(engine) == expected  # says how they differ

        def skipped(reason: str) -> float | None:
            labels = (("mapping", "-"), ("reason", reason))
            return scrape(port).get(("syncd_events_skipped_total", labels))

        wait_until(lambda: skipped("heartbeat") == 1, 20, "the skipped messages to be counted")
        assert skipped("tombstone") == 2
        assert skipped("transaction") == 2
        stale = ("syncd_events_skipped_total", (("mapping", "items"), ("reason", "stale")))
        assert scrape(port).get(stale) == 1  # the late snapshot read of row 4
        assert client.drain(dlq, idle_s=1.0) == []
        assert target_rows(engine) == expected
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()
        client.close()
        engine.dispose()
