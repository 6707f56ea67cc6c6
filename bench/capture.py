"""Capture under measurement: ``syncd run --only capture`` draining a source's backlog.

Per capture mode, a source database of its own on the bench's PostgreSQL, prepared with
``syncd capture install`` (the command line, as sysadmins run it), then a backlog of changes
written *before* the daemon starts: inserts, then updates of the same rows, in transactions of
100, as multi-row statements so that writing them costs the source little. Then the daemon
starts and the rate is taken from the source's queue as the broker counts it (its statistics
plugin's ``enqueueCount``), with no consumer on the queue: what is measured is capture and
publishing alone (one statistics query per poll adds a little load on the broker). The queue is
read back afterwards — not timed — to check that every change arrived once.

PostgreSQL's CPU during a ``logical`` drain is near 0, and rightly so: its walsender decodes the
whole backlog into the replication connection's socket buffers within the first moments, and
the daemon then reads it from there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from math import nan
from pathlib import Path

import psycopg2
import psycopg2.extras
import sqlalchemy as sa

from bench.daemon_phases import cpu_seconds
from bench.target import dsn
from syncd.broker.statistics import queue_statistics
from syncd.config import BrokerConfig, load_config
from tests.harness import Daemon, StompClient, syncd
from tests.services import PostgresCluster, wait_until

CHANGES_PER_TX = 100
POLL_INTERVAL_S = 0.1  # each poll is one statistics query (a STOMP connection of its own)
STATS_TIMEOUT_S = 10
STALL_S = 30  # no new message on the queue for this long, once publishing began: give up
SOURCE_DDL = """CREATE TABLE customers (id integer PRIMARY KEY, name text, email text,
                score integer, updated_at timestamptz NOT NULL DEFAULT now())"""
INSERT = "INSERT INTO customers (id, name, email, score) VALUES %s"
UPDATE = """UPDATE customers AS c SET name = v.name, email = v.email, score = v.score,
                updated_at = now()
            FROM (VALUES %s) AS v (id, name, email, score) WHERE c.id = v.id"""
Row = tuple[int, str, str, int]  # id, name, email, score
CONFIG = """\
broker:
  hosts: ["127.0.0.1:{port}"]
  heartbeat_ms: 2000
state_dir: state/
sources:
  {name}:
    url: "{url}"
    capture: {mode}
    tables: [public.customers]
"""


@dataclass(frozen=True)
class Backlog:
    """The changes written to a source before capture started."""

    inserts: int  # rows 1…inserts
    updates: int  # rows 1…updates, each updated once after every insert
    seconds: float  # writing them (the source's side; not part of the capture rate)

    @property
    def changes(self) -> int:
        return self.inserts + self.updates

    def expected(self) -> set[tuple[str, int]]:
        """Every change as (op, id): what the queue must hold, each once."""
        created = {("c", key) for key in range(1, self.inserts + 1)}
        return created | {("u", key) for key in range(1, self.updates + 1)}


@dataclass(frozen=True)
class Published:
    """A backlog on its way to the broker, as the broker's counters saw it."""

    events: int  # published after the first observation (the rate's numerator)
    seconds: float  # first observed publish to the last
    startup_s: float  # daemon start to the first observed publish
    cores: dict[str, float]  # CPU each process tree used meanwhile, in cores
    enqueued: int  # the queue's enqueue count when the daemon stopped

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else nan


@dataclass(frozen=True)
class ReadBack:
    """The queue read back after the run: every change once, or what is missing or doubled."""

    messages: int
    lost: int  # changes written that no message carries
    duplicated: int  # messages beyond the first for their change
    unexpected: int  # messages that carry no change written


@dataclass(frozen=True)
class CaptureRun:
    backlog: Backlog
    published: Published
    read_back: ReadBack


class CaptureSource:
    """One source database, its capture-only config.yaml, and the capture prepared on it."""

    def __init__(
        self, postgres: PostgresCluster, directory: Path, broker_port: int, mode: str
    ) -> None:
        self.mode = mode
        self.name = f"bench_{mode}"  # the events' source.name, the slot's / triggers' suffix
        self.url = postgres.create_database(f"bench_source_{mode}")
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(SOURCE_DDL)
        finally:
            engine.dispose()
        directory.mkdir()
        self.config = directory / "config.yaml"
        self.config.write_text(
            CONFIG.format(port=broker_port, name=self.name, url=self.url, mode=mode)
        )
        loaded = load_config(self.config)
        self.broker: BrokerConfig = loaded.broker
        self.queue = loaded.sources[self.name].queue

    def install(self) -> None:
        """``syncd capture install`` — before the backlog is written, so it is all captured."""
        result = syncd("capture", "install", "-c", str(self.config))
        if result.returncode != 0 or self.name not in result.stdout:
            raise RuntimeError(f"syncd capture install failed:\n{result.stdout}{result.stderr}")

    def uninstall(self) -> None:
        """``syncd capture uninstall`` once the server has let go of the stopped daemon's slot:
        a slot left behind keeps WAL for ever."""
        if self.mode == "logical":
            query = sa.text(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = :slot AND active"
            )
            engine = sa.create_engine(self.url)
            try:

                def released() -> bool:
                    with engine.connect() as conn:
                        return conn.execute(query, {"slot": f"syncd_{self.name}"}).scalar() == 0

                wait_until(released, 30, "the replication slot to be released")
            finally:
                engine.dispose()
        result = syncd("capture", "uninstall", "-c", str(self.config))
        if result.returncode != 0:
            raise RuntimeError(f"syncd capture uninstall failed:\n{result.stdout}{result.stderr}")

    def write_backlog(self, changes: int) -> Backlog:
        """``changes`` row changes: inserts of new rows, then updates of the first of them."""
        inserts = (changes + 1) // 2
        created_rows = [
            (key, f"Customer {key}", f"c{key}@example.org", key % 10_000)
            for key in range(1, inserts + 1)
        ]
        updated_rows = [
            (key, f"Customer {key} v2", f"c{key}.v2@example.org", (key * 7) % 10_000)
            for key in range(1, changes - inserts + 1)
        ]
        started = time.perf_counter()
        conn = psycopg2.connect(dsn(self.url))
        try:
            for statement, rows in ((INSERT, created_rows), (UPDATE, updated_rows)):
                for chunk in _chunks(rows, CHANGES_PER_TX):
                    with conn, conn.cursor() as cursor:  # one transaction, committed on exit
                        psycopg2.extras.execute_values(
                            cursor, statement, chunk, page_size=CHANGES_PER_TX
                        )
        finally:
            conn.close()
        return Backlog(inserts, len(updated_rows), time.perf_counter() - started)

    def enqueued(self) -> int:
        """How many messages the broker has taken onto the queue (0 before the first)."""
        stats = queue_statistics(self.broker, [self.queue], STATS_TIMEOUT_S)[self.queue]
        return stats.enqueued if stats.exists else 0

    def read_back(self, broker_port: int, backlog: Backlog) -> ReadBack:
        """Take every message off the queue and match it against the backlog."""
        client = StompClient(broker_port)
        try:
            messages = client.drain(self.queue, idle_s=2.0)
        finally:
            client.close()
        seen: set[tuple[str, int]] = set()
        for message in messages:
            event = json.loads(message.body)
            seen.add((event["op"], int((event["after"] or event["before"])["id"])))
        expected = backlog.expected()
        return ReadBack(
            messages=len(messages),
            lost=len(expected - seen),
            duplicated=len(messages) - len(seen),
            unexpected=len(seen - expected),
        )


def measure(
    postgres: PostgresCluster,
    directory: Path,
    broker_port: int,
    mode: str,
    changes: int,
    services: dict[str, int],
    timeout_s: float,
) -> CaptureRun:
    """Install, write the backlog, let ``syncd run --only capture`` publish it; check it."""
    source = CaptureSource(postgres, directory, broker_port, mode)
    source.install()
    backlog = source.write_backlog(changes)
    daemon = Daemon(source.config, "--only", "capture")
    try:
        published = drain(daemon, source, backlog.changes, services, timeout_s)
    finally:
        if daemon.running:
            exit_code = daemon.stop()
            if exit_code != 0:
                raise RuntimeError(f"syncd run exited {exit_code}:\n{daemon.log()[-3000:]}")
    published = dataclasses.replace(published, enqueued=source.enqueued())
    read_back = source.read_back(broker_port, backlog)
    source.uninstall()
    return CaptureRun(backlog, published, read_back)


def drain(
    daemon: Daemon, source: CaptureSource, total: int, services: dict[str, int], timeout_s: float
) -> Published:
    """Start ``daemon`` and poll the queue's enqueue count until ``total`` are on it.

    As in ``daemon_phases.drain``: the first poll that sees messages gives (t_first, n_first),
    and the rate counts only the ``total - n_first`` published after it. Stops early when the
    count stops moving for ``STALL_S`` (events lost: the read-back will say which).
    """
    started = time.perf_counter()
    daemon.start()
    assert daemon.process is not None
    roots = {"syncd": daemon.process.pid, **services}
    first: tuple[float, int, dict[str, float]] | None = None
    last_change, count = started, 0
    deadline = started + timeout_s
    while True:
        enqueued = source.enqueued()
        now = time.perf_counter()
        if enqueued != count:
            last_change, count = now, enqueued
        if enqueued and first is None:
            first = (now, enqueued, cpu_seconds(roots))
        stalled = first is not None and now - last_change > STALL_S
        if first is not None and (enqueued >= total or stalled):
            used, elapsed, span = cpu_seconds(roots), last_change - first[0], now - first[0]
            # A backlog so small that one poll saw it all has no rate: 0 s, NaN cores.
            cores = {k: (used[k] - first[2][k]) / span if span else nan for k in roots}
            return Published(count - first[1], elapsed, first[0] - started, cores, count)
        if not daemon.running or now > deadline:
            state = "exited" if not daemon.running else f"not done after {timeout_s:g} s"
            raise RuntimeError(
                f"syncd run --only capture {state} with {enqueued} of {total} published:\n"
                f"{daemon.log()[-3000:]}"
            )
        time.sleep(POLL_INTERVAL_S)


def _chunks(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
