"""Many daemons, one job, and a broker that fails over (DESIGN.md "Where it runs").

One shared-store master/slave pair (two ActiveMQ processes on one KahaDB directory) serves the
whole module; every scenario lists both in ``broker.hosts`` and kills the master at least once
(the standby takes over in 1-3 s: the shipped broker retries the store's lock every second).

The histories are of partial updates — each update carries one column — so an older event of a
key applied after a newer one is refused by the position guard and its value is lost: the
target equals the fold of the history only if every key's events were applied in order. A
trigger also records any write that takes a row back to an older position.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stomp
from sqlalchemy.pool import NullPool

from syncd.config import load_config
from syncd.mapping.reader import load_mappings
from syncd.publisher import Publisher
from tests.harness import Daemon, Received, StompClient, syncd
from tests.history import PARTIAL_TABLE, Row, partial_history, partial_mapping
from tests.services import BrokerPair, PostgresCluster, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)
DAEMONS = 3

# A row written back to an older position than it had: the apply that must never happen.
WENT_BACK = """
CREATE TABLE went_back (id integer, old_pos bigint, new_pos bigint);
CREATE FUNCTION note_went_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pos < OLD.pos THEN
        INSERT INTO went_back VALUES (NEW.id, OLD.pos, NEW.pos);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_went_back BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION note_went_back();
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerPair]:
    pair = BrokerPair.start(tmp_path_factory.mktemp("pair"))
    yield pair
    pair.close()


@dataclass
class Job:
    """One queue, its target database and one config.yaml that every daemon shares."""

    pair: BrokerPair
    directory: Path
    config: Path
    system: str
    dlq: str
    engine: sa.Engine

    @property
    def queue(self) -> str:
        return f"/queue/syncd.{self.system}"

    def daemon(self, number: int, *args: str) -> Daemon:
        return Daemon(self.config, *args, log_path=self.directory / f"syncd-{number}.log")

    def target(self) -> list[Row]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM ledger ORDER BY 1")]

    def went_back(self) -> list[Row]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM went_back")]

    def applied_rows(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM ledger").scalar_one())

    def publisher(self) -> Publisher:
        config = load_config(self.config)
        return Publisher(config, load_mappings(config.mappings_dir, config.databases))

    def consumers(self) -> int:
        """Consumers on the queue now (0 before anyone subscribed: no queue yet)."""
        try:
            stats = self.pair.queue_stats(self.queue.removeprefix("/queue/"))
        except AssertionError:
            return 0
        return int(stats["consumerCount"])

    def dead_letters(self) -> list[Received]:
        return drain(self.pair, self.dlq)


def send(pair: BrokerPair, destination: str, body: str, headers: dict[str, str]) -> None:
    """One persistent message to the pair's master, confirmed."""
    master = pair.master()
    client = StompClient(master.port)
    try:
        client.send(destination, body, **headers)
        client.flush()
    finally:
        client.close()


def drain(pair: BrokerPair, destination: str, idle_s: float = 1.0) -> list[Received]:
    """Everything on ``destination`` of the pair's master now (consumed)."""
    master = pair.master()
    taken: list[Received] = []
    arrived = threading.Event()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            taken.append(Received(dict(frame.headers), frame.body))
            arrived.set()

    conn = stomp.Connection12([(master.host, master.port)], auto_decode=False)
    conn.set_listener("drain", Listener())
    conn.connect(wait=True)
    conn.subscribe(destination, id="drain", ack="auto")
    while True:
        arrived.clear()
        if not arrived.wait(idle_s):
            break
    conn.disconnect()
    return taken


@pytest.fixture
def job(pair: BrokerPair, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Job]:
    run = f"{next(_runs)}{uuid.uuid4().hex[:6]}"
    system = f"scale{run}"
    url = postgres.create_database(f"scale_{run}")
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(PARTIAL_TABLE)
        conn.exec_driver_sql(WENT_BACK)
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "ledger.yaml").write_text(partial_mapping(system))
    dlq = f"/queue/scale.DLQ.{run}"
    hosts = json.dumps(pair.hosts)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
broker:
  hosts: {hosts}
  heartbeat_ms: 2000
  prefetch: 200
  dead_letter_queue: {dlq}
databases:
  warehouse: {{url: "{url}"}}
mappings: mappings/
state_dir: state/
apply: {{batch_max_messages: 100}}
retry: {{initial_backoff_ms: 100, max_backoff_ms: 1000, max_elapsed_s: 120}}
"""
    )
    yield Job(pair, tmp_path, config, system, dlq, engine)
    engine.dispose()


class PacedPublisher(threading.Thread):
    """Publishes events through the Publisher API in small chunks, a little at a time, so that
    faults land mid-stream; it holds at ``hold_at`` (a share of the events) until ``released``
    — so a fault started before the release is sure to meet a publisher with work left."""

    def __init__(self, job: Job, events: list[dict[str, Any]], hold_at: float) -> None:
        super().__init__(name="publisher")
        self.job, self.events, self.hold_at = job, events, int(len(events) * hold_at)
        self.published = 0
        self.released = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with self.job.publisher() as publisher:
                for start in range(0, len(self.events), 40):
                    if start >= self.hold_at:
                        self.released.wait(120)
                    publisher.publish(self.events[start : start + 40])
                    self.published = start + 40
                    time.sleep(0.01)  # pacing, not waiting for a condition
        except BaseException as exc:  # the test reports it
            self.failure = exc

    def share(self) -> float:
        return self.published / len(self.events)


def test_three_daemons_keep_each_keys_order_through_stop_kill_and_broker_failover(
    job: Job,
) -> None:
    """Three `syncd run` on one config, started at once on a fresh target (the positions table
    is created by whichever wins); mid-stream one is SIGTERMed, one SIGKILLed and restarted,
    and the master broker is SIGKILLed. The target ends equal to the fold of a partial-update
    history, no row ever went back to an older position, nothing is dead-lettered, and every
    daemon still runs and exits 0."""
    source = partial_history(job.system, keys=150, operations=4000, seed=11)
    daemons = [job.daemon(n).start() for n in range(DAEMONS)]
    publishing = PacedPublisher(job, source.events, hold_at=0.6)
    try:
        wait_until(lambda: job.consumers() == DAEMONS, 60, "three consumers on the queue")
        publishing.start()

        wait_until(lambda: publishing.share() >= 0.15, 60, "a sixth of the events published")
        assert daemons[0].stop() == 0  # its groups go to the others
        wait_until(lambda: job.consumers() == DAEMONS - 1, 30, "its consumer to go")
        wait_until(lambda: publishing.share() >= 0.3, 60, "a third of the events published")
        daemons[1].kill()  # its batch in hand is redelivered to the others
        daemons[0] = job.daemon(0).start()
        daemons[1] = job.daemon(1).start()
        wait_until(lambda: publishing.share() >= 0.5, 60, "half of the events published")
        old_master = job.pair.master()
        old_master.kill()  # everyone, the publisher too, fails over to the standby
        publishing.released.set()  # 40% of the history is still to be published
        job.pair.master()
        old_master.start_again()  # the new standby
        publishing.join(120)
        assert not publishing.is_alive() and publishing.failure is None, publishing.failure

        expected = source.expected()
        wait_until(lambda: job.target() == expected, 120, "the target to equal the history")
        assert job.went_back() == []
        assert job.dead_letters() == []
        for daemon in daemons:
            assert daemon.running, daemon.log()[-3000:]
        assert all(d.stop() == 0 for d in daemons)
    finally:
        for daemon in daemons:
            if daemon.running:
                daemon.kill()
    assert "Traceback" not in "".join(d.log() for d in daemons)
    # The daemon that ran throughout reconnected to the new master on its own.
    assert all(f"connected to broker {url}" in daemons[2].log() for url in job.pair.hosts)


def test_publish_waits_while_both_brokers_are_down_and_dlq_replay_fails_over(
    job: Job, tmp_path: Path
) -> None:
    """With both brokers of the pair down, `syncd publish` waits (backoff) until one
    returns, then every event is confirmed; with the first host of ``broker.hosts`` dead,
    `syncd dlq list` and `replay` reach the second. What they send carries its group, a
    very long key's as a digest short enough for a header."""
    long_key = "k" * 20_000  # a header of its own would exceed ActiveMQ's 10 KiB limit
    lines = [
        {"op": "c", "after": {"id": key, "a": 1}, "source": {"seq": seq}}
        for seq, key in ((1, 1), (2, long_key))
    ]
    origin = {"name": job.system, "schema": "public", "table": "ledger"}
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(
        "".join(json.dumps({**e, "source": {**origin, **e["source"]}}) + "\n" for e in lines)
    )
    first, second = job.pair.brokers
    letter = {"op": "c", "after": {"id": 3, "a": 3}, "source": {**origin, "seq": 3}}
    send(
        job.pair,
        job.dlq,
        json.dumps(letter),
        {"syncd-original-destination": job.queue, "syncd-group": "public.ledger:[3]"},
    )

    job.pair.standby().kill()
    job.pair.master().kill()  # both down
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "publish", "-c", str(job.config), str(events_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(3)  # it waits for a broker, it does not give up
        second.start_again()  # the second host returns first, and takes the store
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "published 2 events" in output

    listed = syncd("dlq", "list", "-c", str(job.config), "--json")
    assert listed.returncode == 0, listed.stderr
    replayed = syncd("dlq", "replay", "-c", str(job.config), "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    first.start_again()  # the standby again

    groups = sorted(r.headers["syncd-group"] for r in drain(job.pair, job.queue))
    assert len(groups) == 3
    assert groups[1:] == ["public.ledger:[1]", "public.ledger:[3]"]
    assert groups[0].startswith("public.ledger:#sha256:") and len(groups[0]) < 100
    assert job.dead_letters() == []


def test_capture_through_a_failover_loses_nothing(
    job: Job, postgres: PostgresCluster, tmp_path: Path
) -> None:
    """An outbox capture and the apply loop, in two daemons on one config, while the source
    is written to and the master broker is SIGKILLed: a batch in flight at the failover is
    confirmed to the source only after the new master's receipt, so the target ends equal
    to the source table, row for row."""
    source_url = postgres.create_database(f"{job.system}_src")
    source = sa.create_engine(source_url)  # pooled: the writer commits hundreds of times
    with source.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ledger (id integer PRIMARY KEY, a bigint, b bigint)")
    config = job.config.read_text().replace(
        "state_dir: state/",
        f"""state_dir: state/
sources:
  {job.system}:
    url: "{source_url}"
    capture: outbox
    tables: [public.ledger]
    batch_events: 50""",
    )
    job.config.write_text(config)
    installed = syncd("capture", "install", "-c", str(job.config))
    assert installed.returncode == 0, installed.stdout + installed.stderr

    writes = 0
    stop = threading.Event()

    def write() -> None:
        nonlocal writes
        rng = random.Random(5)
        while not stop.is_set() or writes < 300:
            key, column = rng.randint(1, 40), rng.choice("ab")
            with source.begin() as conn:
                conn.exec_driver_sql(
                    f"INSERT INTO ledger (id, {column}) VALUES ({key}, {writes}) "
                    f"ON CONFLICT (id) DO UPDATE SET {column} = EXCLUDED.{column}"
                )
            writes += 1

    daemons = [job.daemon(0).start(), job.daemon(1, "--only", "apply").start()]
    writer = threading.Thread(target=write, name="writer")
    try:
        writer.start()
        wait_until(lambda: writes > 100 and job.applied_rows() > 0, 60, "capture to flow")
        job.pair.fail_over()
        stop.set()
        writer.join(60)
        with source.connect() as conn:
            expected = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM ledger ORDER BY 1")]

        def target() -> list[Row]:
            return [row[:3] for row in job.target()]

        wait_until(lambda: target() == expected, 90, "the target to equal the source")
        assert job.went_back() == []
        assert job.dead_letters() == []
        assert all(daemon.running for daemon in daemons)
        assert all(daemon.stop() == 0 for daemon in daemons)
    finally:
        stop.set()
        for daemon in daemons:
            if daemon.running:
                daemon.kill()
        source.dispose()
    assert "Traceback" not in "".join(d.log() for d in daemons)
