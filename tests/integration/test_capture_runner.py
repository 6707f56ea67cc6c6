"""Capture as sysadmins run it: `syncd capture install`, `syncd run --only capture` as a process,
changes made in a real PostgreSQL source, the queue read with a plain STOMP client.

Both capture modes (logical decoding and outbox) must pass the same tests. Each test has its
own source database and source name (so its own slot, publication or triggers and its own
queue), and uninstalls in the end: a replication slot left behind would keep WAL for ever.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness import REPO, Daemon, Received, StompClient, syncd
from tests.services import Broker, PostgresCluster, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)
SCHEMA = """
CREATE TABLE customers (id integer PRIMARY KEY, email text);
CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer, total numeric(10, 2));
"""
CONFIG = """\
broker:
  hosts: ["127.0.0.1:{port}"]
  heartbeat_ms: 2000
state_dir: state/
retry: {{initial_backoff_ms: 100, max_backoff_ms: 1000}}
sources:
  {name}:
    url: "{url}"
    capture: {mode}
    tables: [public.customers, public.orders]
"""


@dataclass
class Source:
    """A source database with the schema above, its config.yaml, and a client on its queue."""

    name: str
    mode: str
    config: Path
    engine: sa.Engine
    client: StompClient

    @property
    def queue(self) -> str:
        return f"/queue/syncd.{self.name}"

    def run(self, *statements: str) -> None:
        """The statements in one transaction."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def scalar(self, query: str) -> Any:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(query).scalar()

    def install(self) -> str:
        result = syncd("capture", "install", "-c", str(self.config))
        assert result.returncode == 0, result.stderr
        return result.stdout

    def uninstall(self, *options: str) -> None:
        """Uninstall via the CLI, once the server has let go of a stopped daemon's slot."""
        if self.mode == "logical":
            slot = f"syncd_{self.name}"
            query = (
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"
            )
            wait_until(lambda: self.scalar(query) == 0, 15, "the slot to be released")
        result = syncd(
            "capture", "uninstall", "-c", str(self.config), "--source", self.name, *options
        )
        assert result.returncode == 0, result.stderr
        assert self.name in result.stdout

    def installed(self) -> bool:
        if self.mode == "logical":
            query = (
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'syncd_{self.name}'"
            )
            return bool(self.scalar(query))
        return bool(self.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'syncd_outbox'"))

    def collect(self, enough: Callable[[list[Event]], bool], timeout_s: float = 60) -> list[Event]:
        """Take messages off the queue until ``enough`` says so."""
        events: list[Event] = []
        deadline = time.monotonic() + timeout_s
        while not enough(events):
            assert time.monotonic() < deadline, f"only {len(events)} events arrived in time"
            events += [Event.of(message) for message in self.client.drain(self.queue, 0.5)]
        return events


@dataclass(frozen=True)
class Event:
    """One message as a consumer sees it."""

    table: str
    op: str
    key: int
    position: int
    row: dict[str, Any] | None  # after, or before for a delete
    headers: dict[str, str]

    @classmethod
    def of(cls, message: Received) -> Event:
        event = json.loads(message.body)
        source = event["source"]
        row = event["before"] if event["op"] == "d" else event["after"]
        return cls(
            table=f"{source['schema']}.{source['table']}",
            op=event["op"],
            key=row["id"],
            position=int(source["lsn"] if "lsn" in source else source["seq"]),
            row=row,
            headers=message.headers,
        )

    @property
    def change(self) -> tuple[str, str, int]:
        return self.table, self.op, self.key


def first_copies(events: list[Event]) -> list[Event]:
    """Each change once (a crash may re-send it: same position), in the order first seen."""
    seen: set[tuple[str, int, int]] = set()
    unique = []
    for event in events:
        if (event.table, event.key, event.position) not in seen:
            seen.add((event.table, event.key, event.position))
            unique.append(event)
    return unique


@pytest.fixture(params=["logical", "outbox"])
def source(
    request: pytest.FixtureRequest, broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> Iterator[Source]:
    mode = request.param
    name = f"cap_{mode}_{next(_runs)}"
    url = postgres.create_database(name)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(port=broker.port, name=name, url=url, mode=mode))
    client = StompClient(broker.port)
    made = Source(name, mode, config, engine, client)
    yield made
    client.close()
    if made.installed():  # a failed test must not leave a slot keeping WAL
        made.uninstall("--force")
    engine.dispose()


def test_captured_changes_reach_the_queue_in_commit_order_with_their_groups(
    source: Source,
) -> None:
    printed = source.install()
    assert f"{source.name} ({source.mode}" in printed
    daemon = Daemon(source.config, "--only", "capture").start()
    try:
        source.run(
            "INSERT INTO customers VALUES (1, 'a@x.org'), (2, 'b@x.org')",
        )
        source.run(
            "UPDATE customers SET email = 'A@x.org' WHERE id = 1",
            "INSERT INTO orders VALUES (10, 1, 9.50)",
        )
        source.run("DELETE FROM customers WHERE id = 2")
        events = source.collect(lambda got: len(got) >= 5)
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()

    assert [e.change for e in events] == [
        ("public.customers", "c", 1),
        ("public.customers", "c", 2),
        ("public.customers", "u", 1),
        ("public.orders", "c", 10),
        ("public.customers", "d", 2),
    ]
    assert events[2].row == {"id": 1, "email": "A@x.org"}
    assert events[4].row is not None and events[4].row["id"] == 2
    positions = [e.position for e in events]
    assert positions == sorted(positions) and len(set(positions)) == 5
    for event in events:
        assert event.headers["syncd-group"] == f"{event.table}:[{event.key}]"
        assert event.headers["content-type"] == "application/json"
        assert event.headers["persistent"] == "true"
    assert "capture stopped" in daemon.log()
    assert f"captured[{source.name}]=5" in daemon.log()
    source.uninstall()
    assert not source.installed()


def test_sigkill_between_changes_loses_nothing(source: Source) -> None:
    source.install()
    daemon = Daemon(source.config, "--only", "capture").start()
    try:
        source.run("INSERT INTO orders VALUES (0, 0, 0)")
        events = source.collect(lambda got: len(got) == 1)  # the daemon is capturing now
        for key in range(1, 101):  # one transaction each; SIGKILL while they stream out
            source.run(f"INSERT INTO customers VALUES ({key}, 'v1')")
            if key == 50:
                daemon.kill()
        source.run(*(f"UPDATE customers SET email = 'v2' WHERE id = {k}" for k in range(1, 101)))
        daemon.start()
        source.run("DELETE FROM customers WHERE id <= 10")
        expected = 1 + 100 + 100 + 10

        def complete(got: list[Event]) -> bool:
            return len({e.change for e in events + got}) == expected

        events += source.collect(complete)
        daemon.kill()  # and once more, with everything sent: the next run re-sends at most
        daemon.start()
        source.run("INSERT INTO orders VALUES (1, 1, 1.00)")
        events += source.collect(
            lambda got: any(e.key == 1 and e.table.endswith("orders") for e in got)
        )
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()

    unique = first_copies(events)
    assert len({e.change for e in unique}) == expected + 1
    for key in range(1, 101):  # each key's changes in commit order, positions increasing
        ops = [(e.op, e.position) for e in unique if (e.table, e.key) == ("public.customers", key)]
        assert [op for op, _ in ops] == (["c", "u", "d"] if key <= 10 else ["c", "u"])
        assert [p for _, p in ops] == sorted(p for _, p in ops)
    source.uninstall()
    assert not source.installed()


def test_run_exits_2_and_says_to_install_when_the_source_is_not_prepared(
    source: Source,
) -> None:
    daemon = Daemon(source.config, "--only", "capture").start()
    assert daemon.process is not None
    assert daemon.process.wait(30) == 2, daemon.log()
    assert f"syncd capture install -c CONFIG --source {source.name}" in daemon.log()


def test_capture_and_apply_in_one_daemon_copy_the_source_to_the_target(
    source: Source, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    target_engine = sa.create_engine(target)
    with target_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "crm.yaml").write_text(
        "mappings:\n"
        "  - name: customers\n"
        f"    source: {{system: {source.name}, table: public.customers}}\n"
        "    target: {database: warehouse, table: customers}\n"
        "    key: [id]\n"
    )
    with source.config.open("a") as config:
        config.write(f'databases:\n  warehouse: {{url: "{target}"}}\nmappings: mappings/\n')
    source.install()
    daemon = Daemon(source.config).start()

    def rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM customers ORDER BY id")]

    try:
        source.run("INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        source.run(
            "UPDATE customers SET email = 'B' WHERE id = 2", "DELETE FROM customers WHERE id = 3"
        )
        wait_until(lambda: rows(target_engine) == rows(source.engine), 60, "the target to match")
        assert rows(target_engine) == [(1, "a"), (2, "B")]
    finally:
        assert daemon.stop() == 0, daemon.log()
        target_engine.dispose()
    assert "applied=5" in daemon.log() and f"captured[{source.name}]=5" in daemon.log()


def test_a_capture_only_daemon_tells_systemd_and_prometheus_what_it_captures(
    source: Source, tmp_path: Path
) -> None:
    from tests.integration.test_metrics import scrape
    from tests.integration.test_systemd_notify import NotifySocket
    from tests.services import free_port

    port = free_port()
    with source.config.open("a") as config:
        config.write(f'metrics: {{listen: "127.0.0.1:{port}"}}\n')
    source.install()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    log = (tmp_path / "syncd.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "run", "--only", "capture", "-c", str(source.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=REPO,
    )
    log.close()
    try:
        wait_until(lambda: "READY=1" in notify.lines(), 30, "READY=1")
        ready = next(m for _, m in notify.messages if "READY=1" in m)
        assert f"STATUS=capturing {source.name}: " in ready
        source.run("INSERT INTO customers VALUES (1, 'a'), (2, 'b')")
        source.collect(lambda got: len(got) == 2)
        counter = ("syncd_captured_events_total", (("source", source.name),))
        wait_until(lambda: scrape(port).get(counter) == 2, 10, "the captured counter")
        assert scrape(port)[("syncd_broker_connected", ())] == 1
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.read().decode() == "ok: capturing\n"
        pinged_at = time.monotonic()
        wait_until(lambda: notify.pings_since(pinged_at) >= 2, 10, "captures feeding the watchdog")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "syncd.log").read_text()
        notify.close()
    assert "STOPPING=1" in notify.lines()


def test_snapshot_command_publishes_the_current_rows_below_every_change(source: Source) -> None:
    source.run("INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    result = syncd("snapshot", "-c", str(source.config), "--source", source.name)
    assert result.returncode == 0, result.stderr
    assert f"snapshot of source {source.name} is complete" in result.stdout
    events = source.collect(lambda got: len(got) >= 3)
    assert [(e.change, e.position) for e in events] == [
        (("public.customers", "r", key), 0) for key in (1, 2, 3)
    ]
    assert [e.headers["syncd-group"] for e in events] == [
        f"public.customers:[{key}]" for key in (1, 2, 3)
    ]
    again = syncd("snapshot", "-c", str(source.config), "--source", source.name)
    assert again.returncode == 0, again.stderr  # done: nothing is read twice without --restart
    assert source.client.drain(source.queue, 1.0) == []
