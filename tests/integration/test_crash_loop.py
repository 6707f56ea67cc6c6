"""A message that kills the daemon every time it is processed ends on the dead-letter queue.

The "kill" is real: a trigger in the target makes writing one row hang, the test sees the
daemon stuck on it (pg_stat_activity) and SIGKILLs it, as a crash or the OOM killer would —
again after every restart, until the delivery ledger dead-letters the message unprocessed.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from tests.harness import Daemon, StompClient, write_config
from tests.services import Broker, PostgresCluster, wait_until

MAPPING = """
mappings:
  - name: items
    source: {system: crashy, table: items}
    target: {database: warehouse, table: items}
    key: [id]
"""
SCHEMA = """
CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT);
CREATE FUNCTION hang_on_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.v = 'poison' THEN PERFORM pg_sleep(600); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hang BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION hang_on_poison();
"""


def event(seq: int, key: int, value: str) -> str:
    return json.dumps(
        {
            "op": "c",
            "after": {"id": key, "v": value},
            "source": {"name": "crashy", "table": "items", "seq": seq},
        }
    )


def test_a_message_that_kills_the_daemon_every_time_is_dead_lettered(
    broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("crash_loop")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA)
        # So that the server notices a killed client during pg_sleep and ends its statement.
        conn.exec_driver_sql(
            "ALTER DATABASE crash_loop SET client_connection_check_interval = '200ms'"
        )
    config = write_config(
        tmp_path,
        broker.port,
        url,
        MAPPING,
        dead_letter_queue="/queue/syncd.DLQ.crashy",
        extra="apply: {timeout_s: 600, max_deliveries: 3}\n",
    )
    client = StompClient(broker.port)
    for seq in range(1, 41):
        client.send("/queue/syncd.crashy", event(seq, seq, "poison" if seq == 13 else f"v{seq}"))
    client.flush()

    def hanging() -> bool:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO items%%'"
            return bool(conn.exec_driver_sql(query).scalar_one())

    def rows() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT id, v FROM items ORDER BY id")]

    # max_deliveries 3 means three deaths: on the first delivery (first deliveries are not
    # recorded: they cost nothing), on the redelivered batch (recorded), and on the suspect
    # processed alone (recorded). The next delivery is dead-lettered unprocessed.
    for death in range(3):
        daemon = Daemon(config).start()
        wait_until(hanging, 30, f"the daemon to hang on the poison (death {death + 1})")
        daemon.kill()
        wait_until(lambda: not hanging(), 30, "the killed daemon's statement to end")
    daemon = Daemon(config).start()
    try:
        expected = [(k, f"v{k}") for k in range(1, 41) if k != 13]
        wait_until(lambda: rows() == expected, 60, "every other event to be applied")
        [letter] = client.drain("/queue/syncd.DLQ.crashy")
        assert letter.headers["syncd-error-class"] == "crash-loop"
        assert letter.headers["syncd-attempts"] == "3"
        assert letter.body.decode() == event(13, 13, "poison")
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()
        client.close()
        engine.dispose()
