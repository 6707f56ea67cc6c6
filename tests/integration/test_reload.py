"""SIGHUP reloads mappings between batches; a broken reload keeps the daemon on the old ones."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import sqlalchemy as sa

from tests.harness import Daemon, StompClient, write_config
from tests.services import Broker, wait_until

MAPPING = """
mappings:
  - name: notes
    source: {system: SYSTEM, table: notes}
    target: {database: warehouse, table: notes}
    key: [id]
    columns:
      id: id
      text: {column: text, transform: TRANSFORM}
"""
SECOND = """
  - name: tags
    source: {system: OTHER, table: tags}
    target: {database: warehouse, table: notes}
    key: [id]
"""


def event(system: str, table: str, seq: int, key: int, text: str) -> str:
    source = {"name": system, "table": table, "seq": seq}
    return json.dumps({"op": "c", "after": {"id": key, "text": text}, "source": source})


def test_sighup_swaps_in_a_changed_mapping_and_survives_a_broken_one(
    broker: Broker, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    mapping = MAPPING.replace("SYSTEM", "hup")
    config = write_config(
        tmp_path,
        broker.port,
        url,
        mapping.replace("TRANSFORM", "lower"),
        dead_letter_queue="/queue/hup.DLQ",
    )
    mapping_file = tmp_path / "mappings" / "test.yaml"
    daemon = Daemon(config).start()
    client = StompClient(broker.port)

    def texts() -> dict[int, str]:
        with engine.connect() as conn:
            return dict(conn.exec_driver_sql("SELECT id, text FROM notes").all())  # type: ignore[arg-type]

    def publish(system: str, table: str, seq: int, key: int, text: str) -> None:
        client.send(f"/queue/syncd.{system}", event(system, table, seq, key, text))
        client.flush()

    try:
        publish("hup", "notes", 1, 1, "Hello")
        wait_until(lambda: texts().get(1) == "hello", 30, "the first mapping to apply")

        # A changed mapping (another transform, and a new source system) takes effect.
        mapping_file.write_text(
            mapping.replace("TRANSFORM", "upper") + SECOND.replace("OTHER", "hup2")
        )
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded: 2 mappings" in daemon.log(), 30, "the reload")
        publish("hup", "notes", 2, 2, "World")
        publish("hup2", "tags", 1, 3, "Tag")
        wait_until(lambda: texts() == {1: "hello", 2: "WORLD", 3: "Tag"}, 30, "the new mappings")

        # A broken mapping: every problem logged with file and line, the old mappings stay.
        mapping_file.write_text(mapping.replace("TRANSFORM", "shout"))
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in daemon.log(), 30, "the failed reload")
        assert f"reload failed: {mapping_file}:9: mapping 'notes': " in daemon.log()
        assert "unknown transform 'shout'" in daemon.log()
        publish("hup", "notes", 3, 4, "Still")
        wait_until(lambda: texts().get(4) == "STILL", 30, "the previous mapping to apply")
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()
        client.close()
        engine.dispose()
