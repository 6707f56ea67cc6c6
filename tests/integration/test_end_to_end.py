"""End to end, only through what users touch: config.yaml, mapping YAML, `syncd run` as a
process, and a plain STOMP publisher. A real ActiveMQ and a real PostgreSQL."""

from __future__ import annotations

import itertools
import json
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness import Daemon, StompClient, write_config
from tests.history import MAPPING, TABLE, Source, as_messages, random_history
from tests.services import Broker, PostgresCluster, wait_until

_runs = itertools.count(1)


@dataclass
class Setup:
    config: Path
    queue: str
    dlq: str
    source: Source
    client: StompClient
    engine: sa.Engine

    def target(self) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM dim_customer ORDER BY 1")]


@pytest.fixture
def setup(broker: Broker, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Setup]:
    run = next(_runs)
    system = f"crm{run}"
    url = postgres.create_database(f"e2e_{run}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(TABLE)
    dlq = f"/queue/syncd.DLQ.e2e{run}"
    config = write_config(
        tmp_path, broker.port, url, MAPPING.replace("SYSTEM", system), dead_letter_queue=dlq
    )
    client = StompClient(broker.port)
    yield Setup(config, f"/queue/syncd.{system}", dlq, Source(system), client, engine)
    client.close()
    engine.dispose()


def bad_messages(setup: Setup) -> list[tuple[str, str]]:
    """Send the bad messages; returns (error class, body) of each expected dead letter."""
    source = setup.source
    unknown = dict(source.events[0], source={**source.events[0]["source"], "table": "unknown"})
    rejected = {
        "op": "c",
        "after": {"id": 999_999, "name": "negative", "email": "n@x", "score": -1},
        "source": {"name": source.system, "schema": "public", "table": "customers", "seq": 1},
    }
    good: dict[str, Any] = {
        "op": "c",
        "after": {"id": 888_888, "name": "neighbour", "email": "OK@x", "score": 1},
        "source": {"name": source.system, "schema": "public", "table": "customers", "seq": 2},
    }
    bad_in_array = {"op": "x", "source": {"name": source.system}}
    setup.client.send(setup.queue, b"this is { not json")
    setup.client.send(setup.queue, json.dumps({"hello": "world"}))
    setup.client.send(setup.queue, json.dumps(unknown))
    setup.client.send(setup.queue, json.dumps(rejected))
    setup.client.send(setup.queue, json.dumps([good, bad_in_array]))
    setup.client.flush()
    source.rows[888_888] = good["after"]  # the array's good event must land
    return [
        ("decode", "this is { not json"),
        ("decode", json.dumps({"hello": "world"})),
        ("no-mapping", json.dumps(unknown)),
        ("rejected", json.dumps(rejected)),
        ("decode", json.dumps(bad_in_array, separators=(",", ":"))),
    ]


def assert_dead_letters(setup: Setup, expected: list[tuple[str, str]]) -> None:
    letters = setup.client.drain(setup.dlq)
    got = sorted((m.headers["syncd-error-class"], m.body.decode()) for m in letters)
    assert got == sorted(expected)
    for letter in letters:
        assert letter.headers["syncd-error"]
        assert letter.headers["syncd-original-destination"] == setup.queue
        assert letter.headers["syncd-original-message-id"]
    rejected = next(m for m in letters if m.headers["syncd-error-class"] == "rejected")
    assert rejected.headers["syncd-mapping"] == "customers"
    assert "key [999999]" in rejected.headers["syncd-error"]
    assert "dim_customer" in rejected.headers["syncd-error"]


def test_history_with_duplicates_stale_replays_and_bad_messages_converges(setup: Setup) -> None:
    source = setup.source
    random_history(source, keys=40, operations=400, seed=7)
    deleted = next(k for k in range(1, 41) if k not in source.rows)
    create_of_deleted = next(
        e for e in source.events if e["op"] in "cr" and e["after"]["id"] == deleted
    )
    rng = random.Random(3)
    replays = [*rng.sample(source.events, 40), create_of_deleted]  # duplicates, stale ones
    daemon = Daemon(setup.config).start()
    try:
        setup.client.send_events(setup.queue, as_messages(source.events, random.Random(11)))
        setup.client.send_events(setup.queue, replays)
        expected_dead = bad_messages(setup)
        expected = source.expected()
        wait_until(lambda: setup.target() == expected, 60, "the target to equal the source")
        assert_dead_letters(setup, expected_dead)
        assert setup.target() == expected  # the replays did not move anything afterwards
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_sigkill_mid_stream_loses_and_duplicates_nothing(setup: Setup) -> None:
    source = setup.source
    random_history(source, keys=500, operations=20_000, seed=5)
    setup.client.send_events(setup.queue, (e for e in source.events))
    expected_dead = bad_messages(setup)
    expected = source.expected()
    daemon = Daemon(setup.config).start()
    started = time.monotonic()
    wait_until(lambda: progress(setup) > 4000, 60, "the daemon to apply a first part")
    daemon.kill()  # SIGKILL: no chance to finish the batch or acknowledge anything
    assert progress(setup) < source.seq, "the kill came too late to be mid-stream"
    daemon = Daemon(setup.config).start()
    try:
        wait_until(lambda: setup.target() == expected, 120, "the target to equal the source")
        elapsed = time.monotonic() - started
        assert_dead_letters(setup, expected_dead)
        assert daemon.running, daemon.log()
        print(
            f"\n{len(source.events) + 5} events through a SIGKILL in {elapsed:.1f} s "
            f"= {(len(source.events) + 5) / elapsed:.0f} events/s"
        )
    finally:
        assert daemon.stop() == 0, daemon.log()


def progress(setup: Setup) -> int:
    """The newest source position applied so far (events arrive in position order here)."""
    with setup.engine.connect() as conn:
        try:
            query = "SELECT coalesce(max(position), 0) FROM syncd_positions"
            return int(conn.exec_driver_sql(query).scalar_one())
        except sa.exc.ProgrammingError:
            return 0


def test_sigterm_during_a_backlog_stops_promptly_and_a_restart_converges(setup: Setup) -> None:
    source = setup.source
    random_history(source, keys=300, operations=15_000, seed=9)
    setup.client.send_events(setup.queue, source.events)
    expected = source.expected()
    daemon = Daemon(setup.config).start()
    wait_until(lambda: progress(setup) > 2000, 60, "the daemon to be working through the backlog")
    assert daemon.process is not None
    asked = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0, daemon.log()
    # Prompt means it finished the batch in hand and left the rest of the backlog, which it
    # drains in a few seconds: a clock bound would only measure how loaded the machine is.
    print(f"\nSIGTERM under a backlog: stopped in {time.monotonic() - asked:.1f} s")
    assert progress(setup) < source.seq, "the backlog was gone before it stopped: not prompt"
    daemon = Daemon(setup.config).start()
    try:
        wait_until(lambda: setup.target() == expected, 120, "the target to equal the source")
        assert setup.client.drain(setup.dlq, idle_s=0.5) == []
    finally:
        assert daemon.stop() == 0, daemon.log()
