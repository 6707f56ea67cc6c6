"""`syncd status` against a real ActiveMQ (its statistics plugin) and a real PostgreSQL target,
after the real daemon has applied some events."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.broker.statistics import queue_statistics
from syncd.commands.status import run_status
from syncd.config import load_config
from syncd.errors import ExitCode
from tests.harness import Daemon, StompClient, write_config
from tests.services import Broker, PostgresCluster, free_port, wait_until

pytestmark = pytest.mark.integration

MAPPINGS = """
mappings:
  - name: items
    source: {system: SYSTEM, table: items}
    target: {database: warehouse, table: items}
    key: [sku]
  - name: notes                  # no event ever comes for it
    source: {system: SYSTEM, table: notes}
    target: {database: warehouse, table: notes}
    key: [id]
"""
LAG_S = 60  # how old the events' source commit time is


@dataclass
class Site:
    """A target database, a config naming it, and this test's own queues."""

    config: Path
    url: str
    queue: str
    dead_letter_queue: str
    system: str
    broker_port: int


@pytest.fixture
def site(broker: Broker, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Site]:
    run = uuid.uuid4().hex[:8]
    system = f"status{run}"
    url = postgres.create_database(f"status_{run}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (sku TEXT PRIMARY KEY, title TEXT)")
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    engine.dispose()
    dead_letter_queue = f"/queue/syncd.test.status{run}.DLQ"
    config = write_config(
        tmp_path,
        broker.port,
        url,
        MAPPINGS.replace("SYSTEM", system),
        dead_letter_queue=dead_letter_queue,
    )
    yield Site(config, url, f"/queue/syncd.{system}", dead_letter_queue, system, broker.port)


def item(site: Site, seq: int, sku: str) -> dict[str, Any]:
    return {
        "op": "c",
        "after": {"sku": sku, "title": f"T{seq}"},
        "source": {
            "name": site.system,
            "table": "items",
            "seq": seq,
            "ts_ms": int((time.time() - LAG_S) * 1000),
        },
    }


def status(config: Path, capsys: pytest.CaptureFixture[str], as_json: bool) -> tuple[int, str]:
    code = run_status(load_config(config), argparse.Namespace(json=as_json))
    return code, capsys.readouterr().out


def positions(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("syncd_positions"):
                return 0
            return int(conn.exec_driver_sql("SELECT count(*) FROM syncd_positions").scalar_one())
    finally:
        engine.dispose()


def test_status_shows_waiting_messages_dead_letters_and_applied_positions(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(site.config)
    client = StompClient(site.broker_port)
    daemon = Daemon(site.config).start()
    try:
        client.send_events(site.queue, [item(site, seq, f"K{seq}") for seq in (1, 2, 3)])
        client.send(site.queue, "not json")
        client.flush()
        wait_until(lambda: positions(site.url) == 3, 30, "three applied keys")
        wait_until(
            lambda: (
                queue_statistics(config.broker, [site.dead_letter_queue], 5)[
                    site.dead_letter_queue
                ].depth
                == 1
            ),
            30,
            "the dead letter",
        )
    finally:
        assert daemon.stop() == 0, daemon.log()
    # The daemon is gone: what is published now waits on the queue.
    client.send_events(site.queue, [item(site, seq, f"K{seq}") for seq in (4, 5, 6, 7)])
    client.close()

    code, out = status(site.config, capsys, as_json=True)
    assert code == ExitCode.OK, out
    document = json.loads(out)
    assert document["ok"] is True
    source, dead = document["broker"]["queues"]
    assert source["queue"] == site.queue and source["system"] == site.system
    assert (source["exists"], source["depth"], source["consumers"]) == (True, 4, 0)
    assert (source["enqueued"], source["dequeued"]) == (8, 4)  # a new queue on this broker
    assert dead["queue"] == site.dead_letter_queue and dead["depth"] == 1
    assert document["broker"]["dead_letters"] == 1
    items, notes = document["mappings"]
    assert (items["state"], items["keys"], items["last_position"]) == ("ok", 3, 3)
    assert isinstance(items["lag_s"], float) and LAG_S - 5 < items["lag_s"] < LAG_S + 300
    assert items["last_applied_at"].endswith("+00:00")
    assert (notes["state"], notes["keys"], notes["last_position"]) == ("never applied", 0, None)

    code, out = status(site.config, capsys, as_json=False)
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert [site.queue, "4", "0", "8", "4"] == next(
        line.split() for line in lines if line.startswith(site.queue)
    )
    assert f"Dead letters: 1 on {site.dead_letter_queue}" in lines
    items_row = next(line for line in lines if line.startswith("items "))
    assert items_row.split()[1:4] == ["warehouse.items", "3", "3"]
    assert "never applied" in next(line for line in lines if line.startswith("notes "))


def test_before_the_daemon_ever_ran_nothing_fails(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = status(site.config, capsys, as_json=True)
    assert code == ExitCode.OK, out
    document = json.loads(out)
    source, dead = document["broker"]["queues"]
    assert source["exists"] is False and source["depth"] == 0  # the broker never saw it
    assert dead["exists"] is False and document["broker"]["dead_letters"] == 0
    assert {m["state"] for m in document["mappings"]} == {"never applied"}


def test_broker_down_still_shows_the_targets_and_exits_3(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_port = free_port()
    site.config.write_text(
        site.config.read_text().replace(f':{site.broker_port}"', f':{dead_port}"')
    )
    code, out = status(site.config, capsys, as_json=False)
    assert code == ExitCode.UNAVAILABLE
    assert out.startswith(f"Broker: unreachable: no broker answered: 127.0.0.1:{dead_port}")
    assert "never applied" in out  # the targets were still read


def test_an_unreachable_target_is_marked_and_exits_3(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    unreachable = sa.engine.make_url(site.url).set(port=free_port())
    text = site.config.read_text().replace(
        site.url, unreachable.render_as_string(hide_password=False)
    )
    site.config.write_text(text)
    code, out = status(site.config, capsys, as_json=True)
    assert code == ExitCode.UNAVAILABLE
    document = json.loads(out)
    assert document["ok"] is False and document["broker"]["reachable"] is True
    for mapping in document["mappings"]:
        assert mapping["state"] == "unreachable" and mapping["keys"] is None
        assert mapping["error"].startswith("database warehouse: ")
