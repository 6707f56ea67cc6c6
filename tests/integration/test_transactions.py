"""Whole source transactions (``transactions: atomic``), end to end: the bank-transfer invariant.

A PostgreSQL source holds accounts; threads run concurrent transfer transactions (money
leaves one account and arrives in another, and a ``transfers`` row records it), captured by
logical decoding and applied to a PostgreSQL target by real ``syncd run`` processes. A reader
polls the target all along, one statement per poll, and asserts what no partial transaction
can hide from: the total balance never changes, and every transfer row's two account updates
are there with it (``sum(moves) = 2 × transfers``). Through a SIGKILL and a restart, and
through a failover from one daemon to its standby (both running: exclusive consumers, and
the replication slot taken by one capture at a time).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness import Daemon, StompClient, syncd
from tests.services import Broker, PostgresCluster, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)

ACCOUNTS = 30
OPENING_BALANCE = 1000
TOTAL = ACCOUNTS * OPENING_BALANCE
THREADS = 3

SOURCE_SCHEMA = """
CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL, moves integer NOT NULL);
CREATE TABLE transfers (id bigserial PRIMARY KEY, src integer, dst integer, amount bigint);
"""
# The target refuses a negative balance; the source does not (see the rejection test).
TARGET_SCHEMA = """
CREATE TABLE accounts_copy (
    id integer PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0), moves integer NOT NULL);
CREATE TABLE transfers_copy (id bigint PRIMARY KEY, src integer, dst integer, amount bigint);
"""
MAPPINGS = """\
mappings:
  - name: accounts
    source: {{system: {name}, table: public.accounts}}
    target: {{database: warehouse, table: accounts_copy}}
    key: [id]
  - name: transfers
    source: {{system: {name}, table: public.transfers}}
    target: {{database: warehouse, table: transfers_copy}}
    key: [id]
"""
CONFIG = """\
broker:
  hosts: ["127.0.0.1:{port}"]
  heartbeat_ms: 2000
  dead_letter_queue: {dlq}
state_dir: state{daemon}/
retry: {{initial_backoff_ms: 100, max_backoff_ms: 1000}}
databases:
  warehouse: {{url: "{target}"}}
mappings: ../mappings/
sources:
  {name}:
    url: "{source}"
    capture: {mode}
    tables: [public.accounts, public.transfers]
    transactions: atomic
    batch_events: 50
"""
# One statement: a consistent snapshot of the target (READ COMMITTED gives each statement one).
POLL = (
    "SELECT (SELECT count(*) FROM accounts_copy), (SELECT coalesce(sum(balance), 0) FROM"
    " accounts_copy), (SELECT coalesce(sum(moves), 0) FROM accounts_copy),"
    " (SELECT count(*) FROM transfers_copy)"
)


@dataclass
class Bank:
    mode: str
    name: str
    configs: list[Path]
    source: sa.Engine
    target: sa.Engine
    dlq: str
    client: StompClient

    def run(self, *statements: str) -> None:
        with self.source.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def applied_transfers(self) -> int:
        with self.target.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM transfers_copy").scalar() or 0)

    def equal(self) -> bool:
        for source_table, target_table in (
            ("accounts", "accounts_copy"),
            ("transfers", "transfers_copy"),
        ):
            query = "SELECT * FROM {} ORDER BY id"
            with self.source.connect() as conn:
                want = conn.exec_driver_sql(query.format(source_table)).fetchall()
            with self.target.connect() as conn:
                got = conn.exec_driver_sql(query.format(target_table)).fetchall()
            if want != got:
                return False
        return True


@pytest.fixture(params=["logical"])
def bank(
    request: pytest.FixtureRequest, broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> Iterator[Bank]:
    mode = request.param
    name = f"bank_{mode}_{next(_runs)}"
    source_url = postgres.create_database(f"{name}_source")
    target_url = postgres.create_database(f"{name}_target")
    source, target = sa.create_engine(source_url), sa.create_engine(target_url)
    with source.begin() as conn:
        conn.exec_driver_sql(SOURCE_SCHEMA)
    with target.begin() as conn:
        conn.exec_driver_sql(TARGET_SCHEMA)
    dlq = f"/queue/syncd.DLQ.{name}"
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "bank.yaml").write_text(MAPPINGS.format(name=name))
    configs = []
    for daemon in ("a", "b"):
        (tmp_path / daemon).mkdir()
        config = tmp_path / daemon / "config.yaml"
        config.write_text(
            CONFIG.format(
                port=broker.port,
                dlq=dlq,
                target=target_url,
                name=name,
                source=source_url,
                daemon=daemon,
                mode=mode,
            )
        )
        configs.append(config)
    result = syncd("capture", "install", "-c", str(configs[0]))
    assert result.returncode == 0, result.stdout + result.stderr
    client = StompClient(broker.port)
    made = Bank(mode, name, configs, source, target, dlq, client)
    yield made
    client.close()
    query = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'syncd_{name}' AND active"
    if mode == "logical":
        with source.connect() as conn:
            wait_until(lambda: not conn.exec_driver_sql(query).scalar(), 15, "the slot to be free")
    result = syncd("capture", "uninstall", "-c", str(configs[0]), "--force")
    assert result.returncode == 0, result.stderr
    source.dispose()
    target.dispose()


@dataclass
class Transfers:
    """Threads moving money between accounts, in transactions of one to four transfers."""

    engine: sa.Engine
    stopping: threading.Event = field(default_factory=threading.Event)
    committed: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _work(self, worker: int) -> None:
        rng = random.Random(worker)
        try:
            while not self.stopping.is_set():
                moves = [
                    (*rng.sample(range(1, ACCOUNTS + 1), 2), rng.randint(1, 40))
                    for _ in range(rng.randint(1, 4))
                ]
                updates = sorted(
                    [(src, -amount) for src, _, amount in moves]
                    + [(dst, amount) for _, dst, amount in moves]
                )
                with self.engine.begin() as conn:
                    # Rows locked in key order: concurrent transfers never deadlock.
                    for account, delta in updates:
                        conn.execute(
                            sa.text(
                                "UPDATE accounts SET balance = balance + :d,"
                                " moves = moves + 1 WHERE id = :id"
                            ),
                            {"d": delta, "id": account},
                        )
                    for src, dst, amount in moves:
                        conn.execute(
                            sa.text("INSERT INTO transfers (src, dst, amount) VALUES (:s, :d, :a)"),
                            {"s": src, "d": dst, "a": amount},
                        )
                with self._lock:
                    self.committed += len(moves)
                time.sleep(rng.uniform(0.002, 0.01))
        except BaseException as error:
            self.errors.append(error)


@dataclass
class Reader:
    """Polls the target; every poll must show whole transactions only."""

    engine: sa.Engine
    stopping: threading.Event = field(default_factory=threading.Event)
    polls: int = 0
    seen_transfers: int = 0
    broken: list[tuple[int, ...]] = field(default_factory=list)

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stopping.is_set():
                accounts, total, moves, transfers = conn.exec_driver_sql(POLL).one()
                conn.rollback()
                self.polls += 1
                self.seen_transfers = max(self.seen_transfers, transfers)
                whole = accounts in (0, ACCOUNTS) and total == (TOTAL if accounts else 0)
                if not whole or moves != 2 * transfers:
                    self.broken.append((accounts, total, moves, transfers))
                time.sleep(0.002)


def open_accounts(bank: Bank) -> None:
    """Every account in one source transaction: the target has none of them, or all."""
    values = ", ".join(f"({k}, {OPENING_BALANCE}, 0)" for k in range(1, ACCOUNTS + 1))
    bank.run(f"INSERT INTO accounts VALUES {values}")


# Logical: a SIGKILL and a restart, then a failover; outbox: the failover (a SIGKILL too).
@pytest.mark.parametrize("bank", ["logical", "outbox"], indirect=True)
def test_a_reader_never_sees_part_of_a_transfer_through_sigkill_restart_and_failover(
    bank: Bank,
) -> None:
    first, standby = Daemon(bank.configs[0]), Daemon(bank.configs[1])
    transfers = Transfers(bank.source)
    reader = Reader(bank.target)
    reading = threading.Thread(target=reader.run, daemon=True)
    threads: list[threading.Thread] = []
    try:
        first.start()
        reading.start()
        open_accounts(bank)
        threads = transfers.start()
        wait_until(lambda: bank.applied_transfers() > 40, 60, "transfers to be applied")
        if bank.mode == "logical":
            first.kill()  # SIGKILL, mid-stream: nothing in hand is confirmed or acknowledged
            time.sleep(0.5)  # the source goes on meanwhile
            first.start()
            applied = bank.applied_transfers()
            wait_until(lambda: bank.applied_transfers() > applied + 40, 60, "the restart")
        standby.start()  # a second daemon: it stands by while the first consumes
        time.sleep(1.0)  # its capture waiting for the slot (or relay lock), its consumer queued
        first.kill()  # the standby takes over: the capture and the exclusive subscription
        applied = bank.applied_transfers()
        wait_until(lambda: bank.applied_transfers() > applied + 40, 60, "the standby to apply")
        transfers.stopping.set()
        for thread in threads:
            thread.join(30)
        assert not transfers.errors, transfers.errors[0]
        wait_until(bank.equal, 60, "the target to equal the source")
    finally:
        transfers.stopping.set()
        reader.stopping.set()
        reading.join(10)
        for daemon in (first, standby):
            if daemon.running:
                daemon.kill()
    assert reader.broken == [], f"the reader saw partial transactions: {reader.broken[:5]}"
    assert reader.polls > 100 and reader.seen_transfers == transfers.committed
    assert bank.client.drain(bank.dlq, 0.5) == []
    for daemon in (first, standby):
        assert "Traceback" not in daemon.log(), daemon.log()[-3000:]


def test_a_transaction_the_target_rejects_is_dead_lettered_whole_and_replayed_whole(
    bank: Bank,
) -> None:
    daemon = Daemon(bank.configs[0]).start()
    try:
        open_accounts(bank)
        # Account 1 overdraws: the source allows it, the target's CHECK does not.
        bank.run(
            "UPDATE accounts SET balance = balance + 1500, moves = moves + 1 WHERE id = 2",
            "UPDATE accounts SET balance = balance - 1500, moves = moves + 1 WHERE id = 1",
            "INSERT INTO transfers (src, dst, amount) VALUES (1, 2, 1500)",
        )
        bank.run("UPDATE accounts SET balance = balance + 0, moves = moves + 0 WHERE id = 3")
        letter = one_dead_letter(bank.configs[0])
        headers = letter["headers"]
        assert headers["syncd-error-class"] == "rejected"
        assert headers["syncd-error"].startswith(f"transaction {bank.name}:")
        assert "dead-lettered whole (1 message)" in headers["syncd-error"]
        assert "key [1]" in headers["syncd-error"] and "balance" in headers["syncd-error"]
        assert headers["syncd-tx-part"] == headers["syncd-tx-parts"] == "1"
        tables = [event["source"]["table"] for event in json.loads(letter["body"])]
        assert tables == ["accounts", "accounts", "transfers"]
        wait_until(lambda: target_balances(bank)[3] == 1000, 30, "the next transaction")
        balances = target_balances(bank)  # nothing of it: account 2 did not get the money
        assert (balances[1], balances[2], bank.applied_transfers()) == (1000, 1000, 0)
        # The fix, then the replay: the dead letter goes back whole and applies.
        with bank.target.begin() as conn:
            conn.exec_driver_sql(
                "ALTER TABLE accounts_copy DROP CONSTRAINT accounts_copy_balance_check"
            )
        result = syncd("dlq", "replay", "-c", str(bank.configs[0]), "--all")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_until(bank.equal, 30, "the replayed transaction to apply")
    finally:
        daemon.kill()


def one_dead_letter(config: Path) -> dict[str, Any]:
    """The one dead letter on the queue, as `syncd dlq list --json` shows it, once it is there."""
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        result = syncd("dlq", "list", "-c", str(config), "--json")
        found[:] = json.loads(result.stdout) if result.returncode == 0 else []
        return bool(found)

    wait_until(listed, 30, "the dead letter", 0.5)
    assert len(found) == 1, found
    return found[0]


def target_balances(bank: Bank) -> dict[int, int]:
    with bank.target.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, balance FROM accounts_copy").fetchall()
    return {row[0]: row[1] for row in rows}


def test_a_large_transaction_travels_as_parts_that_say_their_count(bank: Bank) -> None:
    # 6,000 events: three full parts of 2,000 (syncd.broker.parts.PART_EVENTS), the count on
    # the last — which is not an empty one, though the transaction ends on a part's boundary.
    capture = Daemon(bank.configs[0], "--only", "capture").start()
    try:
        bank.run(
            "INSERT INTO transfers (src, dst, amount)"
            " SELECT 1, 2, g FROM generate_series(1, 6000) g"
        )
        queue = f"/queue/syncd.{bank.name}"
        parts: list[Any] = []
        wait_until(
            lambda: bool(parts.extend(bank.client.drain(queue, 0.5)) or len(parts) >= 3),
            30,
            "the parts",
        )
    finally:
        capture.stop()
    headers = [p.headers for p in parts]
    assert [h["syncd-tx-part"] for h in headers] == ["1", "2", "3"]
    assert [h.get("syncd-tx-parts") for h in headers] == [None, None, "3"]
    assert len({h["syncd-tx-id"] for h in headers}) == 1
    sizes = [len(json.loads(p.body)) for p in parts]
    assert sizes == [2000, 2000, 2000]
    amounts = [e["after"]["amount"] for p in parts for e in json.loads(p.body)]
    assert amounts == list(range(1, 6001))
