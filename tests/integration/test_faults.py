"""Fault injection on real processes: a broker SIGKILLed mid-stream, a database that goes away,
a CHECK constraint inside large batches, a row lock that outlasts the statement timeout, and a
daemon SIGKILLed twice while poison keeps arriving.

Each test drives syncd only through what users touch (config.yaml, mapping YAML, `syncd run` as
a process, a plain STOMP publisher) and ends with the same three checks: the target equals the
simulated source exactly, the dead-letter queue holds exactly the messages that deserve it (no
more, no fewer, no duplicates), and the daemon is still running and exits 0 on SIGTERM.

A test that kills or stops a service starts its own (under /tmp, reachable by the postgres
user), never the session's shared ones, which other tests use at the same time.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.harness import Daemon, Received, StompClient, write_config
from tests.history import (
    MAPPING,
    TABLE,
    Row,
    Source,
    as_messages,
    random_changes,
    random_history,
)
from tests.services import Broker, PostgresCluster, wait_until

_runs = itertools.count(1)

# Reconnects and outage waits capped at 1 s, so a test does not sit out a 10 s backoff.
FAST_RETRY = "retry: {initial_backoff_ms: 100, max_backoff_ms: 1000}"
FIRST_KEY_OF_FRESH_ROWS = 900_000  # keys of poison and array neighbours; never in the history

# ------------------------------------------------------------------- messages, good and bad


@dataclass(frozen=True)
class Poison:
    """A message that must end up dead-lettered exactly once."""

    body: str  # as sent
    error_class: str  # the expected syncd-error-class
    dead_body: str  # the expected dead letter's body (one event of an array: that event alone)
    fresh_row: dict[str, Any] | None = None  # a good neighbour in the same array, to be applied


def poison(source: Source, number: int, kind: str) -> Poison:
    """Bad message ``number`` (distinct bodies) of ``kind``: the five ways a message is bad."""
    # Position 1: the key is fresh, so any position applies, and a good neighbour's does not
    # make the progress of the history (its newest applied position) jump ahead.
    seq = 1
    key = FIRST_KEY_OF_FRESH_ROWS + number
    origin = {"name": source.system, "schema": "public", "table": "customers", "seq": seq}
    if kind == "not-json":
        body = f"this is {{ not json #{number}"
        return Poison(body, "decode", body)
    if kind == "not-an-event":
        body = json.dumps({"hello": "world", "number": number})
        return Poison(body, "decode", body)
    if kind == "no-mapping":
        event = {"op": "c", "after": {"id": key}, "source": {**origin, "table": "unknown"}}
        body = json.dumps(event)
        return Poison(body, "no-mapping", body)
    if kind == "rejected":
        row = {"id": key, "name": f"negative {number}", "email": "n@x", "score": -1}
        body = json.dumps({"op": "c", "after": row, "source": origin})
        return Poison(body, "rejected", body)
    if kind == "bad-in-array":
        row = {"id": key, "name": f"neighbour {number}", "email": f"OK{number}@X", "score": 1}
        good = {"op": "c", "after": row, "source": origin}
        bad = {"op": "x", "source": {"name": source.system, "number": number}}
        body = json.dumps([good, bad])
        return Poison(body, "decode", json.dumps(bad, separators=(",", ":")), row)
    raise ValueError(kind)


POISON_KINDS = ("not-json", "not-an-event", "no-mapping", "rejected", "bad-in-array")


def message_bodies(events: list[dict[str, Any]], rng: random.Random) -> list[str]:
    """Message bodies: mostly single events, some arrays, some Debezium {schema, payload}."""
    return [json.dumps(message) for message in as_messages(events, rng)]


def with_replays(messages: list[str], rng: random.Random, count: int) -> list[str]:
    """The messages with ``count`` of them sent again later: duplicates and stale replays."""
    out = list(messages)
    for _ in range(count):
        i = rng.randrange(len(out))
        out.insert(rng.randint(i + 1, len(out)), out[i])
    return out


def with_poison(
    messages: list[str], source: Source, bad: list[Poison], rng: random.Random
) -> list[str]:
    """``bad`` spread over the messages at random places; their good neighbours join the source."""
    out = list(messages)
    for item in bad:
        out.insert(rng.randint(0, len(out)), item.body)
        if item.fresh_row is not None:
            source.rows[item.fresh_row["id"]] = item.fresh_row
    return out


# ------------------------------------------------------------------------------ the test rig


@dataclass
class Rig:
    """One test's queue, dead-letter queue, target database and config."""

    broker: Broker
    config: Path
    system: str
    queue: str
    dlq: str
    engine: sa.Engine

    def target(self) -> list[Row]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM dim_customer ORDER BY 1")]

    def progress(self) -> int:
        """The newest source position applied so far (0 before the daemon made its table)."""
        with self.engine.connect() as conn:
            try:
                query = "SELECT coalesce(max(position), 0) FROM syncd_positions"
                return int(conn.exec_driver_sql(query).scalar_one())
            except sa.exc.ProgrammingError:
                return 0

    def publish(self, bodies: list[str]) -> None:
        """Send every body as a persistent message and wait for the broker's receipt."""
        client = StompClient(self.broker.port)
        try:
            for body in bodies:
                client.send(self.queue, body)
            client.flush()
        finally:
            client.close()

    def queue_depth(self) -> int:
        """Messages on the source queue not yet acknowledged (in flight included)."""
        return int(self.broker.queue_stats(self.queue.removeprefix("/queue/"))["size"])

    def dead_letters(self) -> StompClient:
        """Everything that arrives on the dead-letter queue, through one subscription kept
        open (repeated drains could miss one that arrives between a drain's last wait and its
        unsubscribe; a test that counts dead letters exactly must not)."""
        client = StompClient(self.broker.port)
        client.subscribe(self.dlq, id="dead-letters", ack="auto")
        return client


def make_rig(
    broker: Broker, postgres: PostgresCluster, tmp_path: Path, extra: str
) -> Iterator[Rig]:
    run = f"{next(_runs)}{uuid.uuid4().hex[:6]}"
    system = f"faults{run}"
    url = postgres.create_database(f"faults_{run}")
    # NullPool: a database restarted under the test must not leave dead pooled connections.
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(TABLE)
    dlq = f"/queue/syncd.DLQ.faults{run}"
    config = write_config(
        tmp_path,
        broker.port,
        url,
        MAPPING.replace("SYSTEM", system),
        dead_letter_queue=dlq,
        extra=extra,
    )
    yield Rig(broker, config, system, f"/queue/syncd.{system}", dlq, engine)
    engine.dispose()


def private_dir() -> Path:
    """A fresh directory under /tmp that the postgres user can reach."""
    path = Path(tempfile.mkdtemp(prefix="syncd-faults-", dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker for this test alone: it may be killed."""
    directory = private_dir()
    started = Broker.start(directory / "broker")
    try:
        yield started
    finally:
        started.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for this test alone: it may be stopped."""
    directory = private_dir()
    cluster = PostgresCluster.start(directory / "postgres")
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def spawn() -> Iterator[Callable[[Path], Daemon]]:
    """Starts `syncd run`; whatever a failed test left running is killed afterwards."""
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        daemon = Daemon(config).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.running:
            daemon.kill()


# -------------------------------------------------------------------------------- assertions


def applied_beyond(rig: Rig, position: int) -> Callable[[], bool]:
    return lambda: rig.progress() > position


def log_tail(daemon: Daemon, lines: int = 60) -> str:
    return "\n--- syncd log (tail) ---\n" + "\n".join(daemon.log().splitlines()[-lines:])


def assert_converges(rig: Rig, expected: list[Row], daemon: Daemon, timeout_s: float) -> None:
    """Wait until the target equals ``expected``; on timeout say how far apart they are."""
    deadline = time.monotonic() + timeout_s
    got: list[Row] = []
    while time.monotonic() < deadline:
        got = rig.target()
        if got == expected:
            return
        assert daemon.running, "the daemon exited" + log_tail(daemon)
        time.sleep(0.2)
    want = {r[0]: r for r in expected}
    have = {r[0]: r for r in got}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    wrong = [(want[k], have[k]) for k in sorted(set(want) & set(have)) if want[k] != have[k]]
    raise AssertionError(
        f"after {timeout_s} s the target differs from the source: {len(missing)} rows missing "
        f"{missing[:5]}, {len(extra)} extra {extra[:5]}, {len(wrong)} different "
        f"(expected, found) {wrong[:3]}" + log_tail(daemon)
    )


def assert_queue_settles(rig: Rig, daemon: Daemon, timeout_s: float = 60) -> None:
    """Every message on the source queue acknowledged: its dead letters are final."""
    try:
        wait_until(lambda: rig.queue_depth() == 0, timeout_s, f"{rig.queue} to empty", 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {rig.queue_depth()} left" + log_tail(daemon)) from None


def assert_dead_letters(
    rig: Rig, letters: list[Received], expected: list[tuple[str, str]], daemon: Daemon
) -> None:
    """Exactly ``expected`` (error class, body) pairs — duplicates count — with their headers."""
    got = sorted((m.headers.get("syncd-error-class", "?"), m.body.decode()) for m in letters)
    assert got == sorted(expected), (
        f"{len(got)} dead letters, {len(expected)} expected; unexpected "
        f"{sorted(set(got) - set(expected))[:5]}, missing {sorted(set(expected) - set(got))[:5]}, "
        f"duplicated {sorted({g for g in got if got.count(g) > 1})[:5]}" + log_tail(daemon)
    )
    for letter in letters:
        assert letter.headers["syncd-error"], letter.headers
        assert letter.headers["syncd-original-destination"] == rig.queue, letter.headers
        assert letter.headers["syncd-original-message-id"], letter.headers
        if letter.headers["syncd-error-class"] in ("rejected", "retries-exhausted"):
            key = letter.headers["syncd-key"]
            assert letter.headers["syncd-mapping"] == "customers", letter.headers
            assert f"key {key}" in letter.headers["syncd-error"], letter.headers
            assert "customers" in letter.headers["syncd-error"], letter.headers
            assert "dim_customer" in letter.headers["syncd-error"], letter.headers


def assert_still_running_then_stops_cleanly(daemon: Daemon) -> None:
    assert daemon.running, "the daemon exited" + log_tail(daemon)
    code = daemon.stop()
    assert code == 0, f"exit {code} on SIGTERM" + log_tail(daemon)


# ------------------------------------------------------------------------------------- tests


@pytest.fixture
def broker_rig(own_broker: Broker, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(own_broker, postgres, tmp_path, FAST_RETRY)


def test_broker_sigkill_and_restart_mid_stream_loses_nothing(
    broker_rig: Rig, own_broker: Broker, spawn: Callable[[Path], Daemon]
) -> None:
    rig = broker_rig
    source = Source(rig.system)
    random_history(source, keys=300, operations=9000, seed=21)
    rng = random.Random(22)
    messages = with_replays(message_bodies(source.events, rng), rng, count=300)
    bad = [poison(source, n, kind) for n, kind in enumerate(("not-json", "no-mapping", "rejected"))]
    # Spread over the stream: before, around and after the kill.
    for item, fraction in zip(bad, (0.1, 0.5, 0.9), strict=True):
        messages.insert(int(len(messages) * fraction), item.body)
    rig.publish(messages)
    expected = source.expected()
    daemon = spawn(rig.config)
    started = time.monotonic()

    wait_until(lambda: rig.progress() > source.seq // 3, 60, "the daemon to apply a first part")
    own_broker.kill()
    killed_at = rig.progress()
    assert killed_at < source.seq, "the kill came too late to be mid-stream"
    time.sleep(2)
    assert daemon.running, "the daemon exited while the broker was down" + log_tail(daemon)
    own_broker.restart()

    assert_converges(rig, expected, daemon, timeout_s=90)
    assert_queue_settles(rig, daemon)
    dead = rig.dead_letters()
    try:
        letters = dead.settled(len(bad))
    finally:
        dead.close()
    assert_dead_letters(rig, letters, [(b.error_class, b.dead_body) for b in bad], daemon)
    assert rig.target() == expected
    print(
        f"\n{len(messages)} messages through a broker SIGKILL at position {killed_at}/"
        f"{source.seq} in {time.monotonic() - started:.1f} s"
    )
    assert_still_running_then_stops_cleanly(daemon)


@pytest.fixture
def outage_rig(broker: Broker, own_postgres: PostgresCluster, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(broker, own_postgres, tmp_path, FAST_RETRY)


OUTAGE_S = 8


def test_database_outage_of_eight_seconds_pauses_and_resumes(
    outage_rig: Rig, own_postgres: PostgresCluster, spawn: Callable[[Path], Daemon]
) -> None:
    rig = outage_rig
    source = Source(rig.system)
    random_history(source, keys=300, operations=9000, seed=31)
    rng = random.Random(32)
    bad = [poison(source, n, kind) for n, kind in enumerate(POISON_KINDS)]
    messages = with_poison(
        with_replays(message_bodies(source.events, rng), rng, 200), source, bad, rng
    )
    # Part of the stream is on the queue when the database goes away, the rest arrives
    # while it is away.
    split = len(messages) * 2 // 3
    expected = source.expected()
    dead = rig.dead_letters()
    try:
        rig.publish(messages[:split])
        daemon = spawn(rig.config)
        wait_until(lambda: rig.progress() > source.seq // 5, 60, "the daemon to apply a first part")
        own_postgres.stop()
        stopped_at = time.monotonic()
        rig.publish(messages[split:])
        time.sleep(max(0.0, stopped_at + OUTAGE_S - time.monotonic()))
        assert daemon.running, "the daemon exited during the outage" + log_tail(daemon)
        own_postgres.start_again()
        resumed_at = time.monotonic()

        assert_converges(rig, expected, daemon, timeout_s=90)
        caught_up_s = time.monotonic() - resumed_at
        assert_queue_settles(rig, daemon)
        letters = dead.settled(len(bad))
    finally:
        dead.close()
    assert_dead_letters(rig, letters, [(b.error_class, b.dead_body) for b in bad], daemon)
    print(f"\ncaught up {caught_up_s:.1f} s after an {OUTAGE_S} s database outage")
    assert_still_running_then_stops_cleanly(daemon)


@pytest.fixture
def batch_rig(broker: Broker, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Rig]:
    extra = f"apply: {{batch_max_messages: 500, batch_linger_ms: 50}}\n{FAST_RETRY}"
    yield from make_rig(broker, postgres, tmp_path, extra)


def test_constraint_rejects_some_rows_inside_large_batches(
    batch_rig: Rig, spawn: Callable[[Path], Daemon]
) -> None:
    rig = batch_rig
    source = Source(rig.system)
    total, doomed = 5000, [10_001 + i for i in range(7)]
    for key in doomed:
        source.create(key)
    # The 7 refused updates evenly spread over the 5,000 events; nothing follows them for
    # their keys, so each stays as it was created.
    spread = {int((i + 0.5) * total / len(doomed)) for i in range(len(doomed))}
    refused: list[dict[str, Any]] = []
    rng = random.Random(41)
    while len(source.events) < total:
        if len(source.events) in spread:
            refused.append(source.rejected_update(doomed[len(refused)]))
        else:
            random_changes(source, rng, keys=400, count=1)
    assert len(refused) == len(doomed)
    # One message per event, except that the middle refused event travels in an array of three:
    # it alone is dead-lettered (as its own JSON), its neighbours are applied.
    middle = source.events.index(refused[3])
    messages = [json.dumps(e) for e in source.events[: middle - 1]]
    messages.append(json.dumps(source.events[middle - 1 : middle + 2]))
    messages += [json.dumps(e) for e in source.events[middle + 2 :]]
    expected_dead = [("rejected", json.dumps(e)) for e in refused]
    expected_dead[3] = ("rejected", json.dumps(refused[3], separators=(",", ":")))
    rig.publish(messages)  # all queued first, so that batches are full (500 messages)
    expected = source.expected()

    dead = rig.dead_letters()
    try:
        daemon = spawn(rig.config)
        started = time.monotonic()
        assert_converges(rig, expected, daemon, timeout_s=90)
        elapsed = time.monotonic() - started
        assert_queue_settles(rig, daemon)
        letters = dead.settled(len(refused))
    finally:
        dead.close()
    assert_dead_letters(rig, letters, expected_dead, daemon)
    assert sorted(m.headers["syncd-key"] for m in letters) == [f"[{k}]" for k in doomed]
    in_array = [m for m in letters if "syncd-event-index" in m.headers]
    assert [m.headers["syncd-event-index"] for m in in_array] == ["1"]
    print(f"\n{total} events with {len(refused)} refused, in batches of 500: {elapsed:.1f} s")
    assert_still_running_then_stops_cleanly(daemon)


LOCK_CONFIG = """
apply: {timeout_s: 1}
retry: {attempts: 3, max_elapsed_s: 5, initial_backoff_ms: 100, max_backoff_ms: 500}
"""
LOCKED_KEY = 7


@pytest.fixture
def lock_rig(broker: Broker, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(broker, postgres, tmp_path, LOCK_CONFIG)


def _lock_scenario(
    rig: Rig, spawn: Callable[[Path], Daemon], hold_s: float
) -> tuple[Daemon, dict[str, Any], list[Received]]:
    """Rows 1..40 synced; then another session locks row 7 for ``hold_s`` while one event for
    row 7 and events for rows 1..24 arrive; after the release, more events (row 7's too).

    Returns the daemon, the event that arrived for the locked row, and the dead letters once
    everything settled. With a lock held longer than the retry limits (``hold_s`` > 10), also
    asserts that the other rows were applied, and row 7's event dead-lettered, while the lock
    was still held (held until both are seen).
    """
    source = Source(rig.system)
    for key in range(1, 41):
        source.create(key)
    rig.publish([json.dumps(e) for e in source.events])
    daemon = spawn(rig.config)
    assert_converges(rig, source.expected(), daemon, timeout_s=30)
    gives_up = hold_s > 10

    dead = rig.dead_letters()
    try:
        with rig.engine.connect() as holder:
            transaction = holder.begin()
            try:
                holder.exec_driver_sql(
                    f"SELECT * FROM dim_customer WHERE customer_id = {LOCKED_KEY} FOR UPDATE"
                )
                locked_at = time.monotonic()
                unchanged = _row(source.rows[LOCKED_KEY])
                first = len(source.events)
                for key in range(1, 25):
                    source.update(key)  # row 7's one event among the others'
                blocked = source.events[first + LOCKED_KEY - 1]
                assert blocked["after"]["id"] == LOCKED_KEY
                rig.publish([json.dumps(e) for e in source.events[first:]])
                if gives_up:
                    # The lock is held until both are seen (however slow the machine), at
                    # least hold_s: longer than the retry limits, so row 7's event gives up.
                    others = [r for r in source.expected() if r[0] != LOCKED_KEY]
                    while_locked = sorted([*others, unchanged])
                    assert_converges(rig, while_locked, daemon, timeout_s=60)
                    wait_until(
                        lambda: len(dead.messages) >= 1,
                        60,
                        "the locked row's event to be dead-lettered while the lock is held",
                    )
                # Without giving up, the hold is the point: shorter than the retry window.
                time.sleep(max(0.0, locked_at + hold_s - time.monotonic()))
            finally:
                transaction.rollback()

        # Not wedged: what arrives after the release is applied, the locked row's too.
        after_release = len(source.events)
        source.update(LOCKED_KEY)
        for key in (1, 2, 3, 38, 39, 40):
            source.update(key)
        source.create(41)
        rig.publish([json.dumps(e) for e in source.events[after_release:]])
        assert_converges(rig, source.expected(), daemon, timeout_s=30)
        assert_queue_settles(rig, daemon)
        letters = dead.settled(1 if gives_up else 0, timeout_s=5)
    finally:
        dead.close()
    return daemon, blocked, letters


def _row(row: dict[str, Any]) -> Row:
    return (row["id"], row["name"], row["email"].lower(), row["score"])


def test_statement_blocked_by_a_lock_beyond_the_timeout(
    lock_rig: Rig, spawn: Callable[[Path], Daemon]
) -> None:
    started = time.monotonic()
    daemon, blocked, letters = _lock_scenario(lock_rig, spawn, hold_s=15)
    assert_dead_letters(lock_rig, letters, [("retries-exhausted", json.dumps(blocked))], daemon)
    assert letters[0].headers["syncd-key"] == f"[{LOCKED_KEY}]"
    elapsed = time.monotonic() - started
    print(f"\nlock held 15 s: 1 event dead-lettered, the rest applied, in {elapsed:.1f} s")
    assert_still_running_then_stops_cleanly(daemon)


def test_statement_blocked_by_a_lock_released_within_the_retry_window(
    lock_rig: Rig, spawn: Callable[[Path], Daemon]
) -> None:
    daemon, _blocked, letters = _lock_scenario(lock_rig, spawn, hold_s=2)
    assert_dead_letters(lock_rig, letters, [], daemon)
    assert_still_running_then_stops_cleanly(daemon)


@pytest.fixture
def poison_rig(broker: Broker, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(broker, postgres, tmp_path, FAST_RETRY)


def test_sigkill_of_the_daemon_during_a_poison_heavy_stream(
    poison_rig: Rig, spawn: Callable[[Path], Daemon]
) -> None:
    rig = poison_rig
    source = Source(rig.system)
    random_history(source, keys=300, operations=9000, seed=51)
    rng = random.Random(52)
    messages = with_replays(message_bodies(source.events, rng), rng, count=300)
    bad = [poison(source, n, POISON_KINDS[n % len(POISON_KINDS)]) for n in range(400)]
    messages = with_poison(messages, source, bad, rng)  # about one message in twenty
    rig.publish(messages)
    expected = source.expected()
    started = time.monotonic()

    daemon = spawn(rig.config)
    kills = []
    for fraction in (0.25, 0.6):
        wait_until(
            applied_beyond(rig, int(source.seq * fraction)),
            60,
            f"the daemon to apply {fraction:.0%} of the stream",
        )
        daemon.kill()  # SIGKILL: no chance to finish the batch or acknowledge anything
        kills.append(rig.progress())
        assert kills[-1] < source.seq, "the kill came too late to be mid-stream"
        daemon = spawn(rig.config)

    dead = rig.dead_letters()
    try:
        assert_converges(rig, expected, daemon, timeout_s=120)
        assert_queue_settles(rig, daemon)
        letters = dead.settled(len(bad))
    finally:
        dead.close()
    assert_dead_letters(rig, letters, [(b.error_class, b.dead_body) for b in bad], daemon)
    print(
        f"\n{len(messages)} messages ({len(bad)} bad) through SIGKILLs at positions {kills} "
        f"of {source.seq} in {time.monotonic() - started:.1f} s"
    )
    assert_still_running_then_stops_cleanly(daemon)
