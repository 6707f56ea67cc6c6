"""The apply loop's settle, ack and dead-letter logic, on the in-memory broker.

The target is a real SQLite file (milliseconds, no server); the broker is
``syncd.broker.memory.InMemoryBroker``, whose every ack and dead letter the tests can see.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import syncd.pipeline.loop
from syncd.apply.plan import Verdict
from syncd.apply.sql import SqlApplier
from syncd.broker.memory import InMemoryBroker
from syncd.config import ApplyConfig, RetryConfig
from syncd.mapping import Mapping, OnDelete
from syncd.pipeline.ledger import DeliveryLedger
from syncd.pipeline.loop import ApplyLoop
from syncd.routing import Router
from syncd.telemetry.stats import Stats

QUEUE = "/queue/syncd.crm"
DLQ = "/queue/syncd.DLQ"
CUSTOMERS = Mapping(
    name="customers",
    source_system="crm",
    source_table="public.customers",
    target_database="warehouse",
    target_table="customers",
    key=("id",),
    columns=None,
    on_delete=OnDelete("delete"),
    file="test.yaml",
    line=1,
)


class _Progress:
    def __init__(self) -> None:
        self.ready_said: list[str] = []

    def ready(self, status: str) -> None:
        self.ready_said.append(status)

    def status(self, text: str) -> None:
        pass

    def alive(self) -> None:
        pass

    def waiting(self, status: str) -> None:
        pass


def event(key: int, seq: int, name: str = "x", score: int = 1) -> dict[str, Any]:
    return {
        "op": "u",
        "after": {"id": key, "name": name, "score": score},
        "source": {"name": "crm", "schema": "public", "table": "customers", "seq": seq},
    }


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


class Rig:
    """An apply loop on the in-memory broker and a SQLite target, run on a thread on demand."""

    def __init__(self, directory: Path):
        self.url = f"sqlite:///{directory / 'target.db'}"
        engine = sa.create_engine(self.url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT,"
                " score INTEGER CHECK (score >= 0))"
            )
        self.engine = engine
        self.broker = InMemoryBroker()
        self.broker.subscribe(QUEUE)
        self.applier = SqlApplier("warehouse", self.url, [CUSTOMERS], "syncd_positions")
        assert self.applier.prepare() == []
        self.ledger = DeliveryLedger(directory / "deliveries.db")
        self.stats = Stats()
        self.progress = _Progress()
        self.between_batches: Callable[[], None] = lambda: None
        self.loop = self.make_loop()

    def make_loop(self) -> ApplyLoop:
        router = Router([CUSTOMERS], self.applier.target_columns)
        return ApplyLoop(
            self.broker,
            router,
            {"warehouse": self.applier},
            ApplyConfig(
                batch_max_messages=50,
                batch_linger_ms=5,
                positions_table="syncd_positions",
                timeout_s=5.0,
                max_deliveries=3,
                unavailable_placeholder="__debezium_unavailable_value",
            ),
            RetryConfig(attempts=2, initial_backoff_ms=1, max_backoff_ms=5, max_elapsed_s=1.0),
            DLQ,
            self.stats,
            self.ledger,
            self.progress,
            between_batches=lambda: self.between_batches(),
        )

    def drain(self, timeout_s: float = 10) -> None:
        """Run the loop until every message is settled (acknowledged)."""
        self.run_until(lambda: self.broker.unsettled() == 0, timeout_s)
        assert self.broker.unsettled() == 0, "the loop left messages unsettled"

    def run_until(self, done: Callable[[], bool], timeout_s: float = 10) -> None:
        """Run the loop on a thread until ``done()`` (or the timeout); its failure is raised."""
        stopping = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.loop.run(stopping)
            except BaseException as exc:  # the test fails with it below
                failure.append(exc)
                stopping.set()

        thread = threading.Thread(target=run)
        thread.start()
        waited = 0.0
        while not done() and not stopping.wait(0.005) and waited < timeout_s:
            waited += 0.005
        stopping.set()
        thread.join(10)
        if failure:
            raise failure[0]

    def rows(self) -> dict[int, tuple[Any, ...]]:
        with self.engine.connect() as conn:
            found = conn.exec_driver_sql("SELECT id, name, score FROM customers").fetchall()
        return {row[0]: tuple(row[1:]) for row in found}

    def dead_letters(self) -> list[Any]:
        return self.broker.sent.get(DLQ, [])

    def close(self) -> None:
        self.applier.close()
        self.ledger.close()
        self.engine.dispose()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def test_a_batch_is_acknowledged_after_its_rows_commit_with_one_cumulative_ack(rig: Rig) -> None:
    ids = [rig.broker.publish(QUEUE, body(event(k, k))) for k in range(1, 6)]
    rig.drain()
    assert rig.rows() == {k: ("x", 1) for k in range(1, 6)}
    assert rig.broker.acknowledged() == ids
    assert all(not settled.dead_letters for settled in rig.broker.settled)
    assert rig.progress.ready_said, "READY is said once connected"


def test_a_message_that_is_not_json_is_dead_lettered_untouched_and_its_neighbours_apply(
    rig: Rig,
) -> None:
    rig.broker.publish(QUEUE, body(event(1, 1)))
    bad = rig.broker.publish(QUEUE, b"{not json", {"syncd-group": "g"})
    rig.broker.publish(QUEUE, body(event(2, 2)))
    rig.drain()
    assert rig.rows() == {1: ("x", 1), 2: ("x", 1)}
    (letter,) = rig.dead_letters()
    assert letter.body == b"{not json"
    assert letter.headers["syncd-error-class"] == "decode"
    assert letter.headers["syncd-original-message-id"] == bad
    assert letter.headers["syncd-group"] == "g"
    # The dead letter went in the same settle as the acknowledgement of its message.
    (settle,) = [s for s in rig.broker.settled if s.dead_letters]
    assert bad in settle.acknowledged


def test_one_bad_event_of_an_array_is_dead_lettered_alone(rig: Rig) -> None:
    rig.broker.publish(QUEUE, body([event(1, 1), {"op": "x"}, event(2, 2)]))
    rig.drain()
    assert rig.rows() == {1: ("x", 1), 2: ("x", 1)}
    (letter,) = rig.dead_letters()
    assert json.loads(letter.body) == {"op": "x"}
    assert letter.headers["syncd-event-index"] == "1"


def test_a_rejected_row_is_found_by_halving_and_dead_lettered_alone(rig: Rig) -> None:
    for k in range(1, 9):
        rig.broker.publish(QUEUE, body(event(k, k, score=-1 if k == 6 else 1)))
    rig.drain()
    assert set(rig.rows()) == {1, 2, 3, 4, 5, 7, 8}
    (letter,) = rig.dead_letters()
    assert letter.headers["syncd-error-class"] == "rejected"
    assert letter.headers["syncd-key"] == "[6]"


def test_a_settle_lost_with_the_connection_redelivers_and_dead_letters_only_once(
    rig: Rig,
) -> None:
    rig.broker.publish(QUEUE, body(event(1, 1)))
    rig.broker.publish(QUEUE, b"[]")
    rig.broker.publish(QUEUE, body(event(1, 2, name="newer")))
    rig.broker.fail_settles = 1  # the first settle dies with its connection
    rig.drain()
    assert rig.rows() == {1: ("newer", 1)}
    assert len(rig.dead_letters()) == 1  # the lost settle's dead letter never landed
    # The redelivery changed nothing: the newer event is a duplicate, the older one stale.
    assert rig.stats.total(Verdict.APPLIED) == 2
    assert rig.stats.total(Verdict.DUPLICATE) == 1
    assert rig.stats.total(Verdict.STALE) == 1


def test_a_broker_that_refuses_is_retried_until_it_answers(rig: Rig) -> None:
    rig.broker.refuse_connects = 2
    rig.broker.publish(QUEUE, body(event(1, 1)))
    rig.drain()
    assert rig.rows() == {1: ("x", 1)}


def test_a_message_redelivered_after_deaths_is_dead_lettered_as_a_crash_loop(rig: Rig) -> None:
    poison = rig.broker.publish(QUEUE, body(event(1, 1)), {"redelivered": "true"})
    rig.ledger.begin([poison])  # two deaths recorded while processing it
    rig.ledger.begin([poison])
    rig.broker.publish(QUEUE, body(event(2, 2)))
    rig.drain()
    assert rig.rows() == {2: ("x", 1)}
    (letter,) = rig.dead_letters()
    assert letter.headers["syncd-error-class"] == "crash-loop"
    assert rig.ledger.starts([poison]) == {}


def test_a_crash_loop_dead_letter_lost_with_the_connection_still_counts_its_deaths(
    rig: Rig,
) -> None:
    # The dead letter's settle dies with the connection: the poison is redelivered, and its
    # recorded deaths must still be there, or the next delivery processes it (and dies) again.
    poison = rig.broker.publish(QUEUE, body(event(1, 1)), {"redelivered": "true"})
    rig.ledger.begin([poison])
    rig.ledger.begin([poison])
    rig.broker.publish(QUEUE, body(event(2, 2)))
    rig.broker.fail_settles = 1
    rig.drain()
    assert rig.rows() == {2: ("x", 1)}  # the poison was never processed
    (letter,) = rig.dead_letters()
    assert letter.headers["syncd-error-class"] == "crash-loop"
    assert [len(letters) for letters in rig.broker.attempted if letters] == [1, 1]
    assert rig.ledger.starts([poison]) == {}  # forgotten once its dead letter landed


class _Died(BaseException):
    """Stands for the process dying (a segfault, the OOM killer) while it decodes a body."""


def test_a_body_that_kills_the_daemon_while_decoding_is_counted_before_decoding(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_decode = syncd.pipeline.loop.decode_body

    def decode(message_body: bytes | str, *rest: Any) -> Any:
        if message_body == b'{"kills": "the daemon"}':
            raise _Died
        return real_decode(message_body, *rest)

    monkeypatch.setattr(syncd.pipeline.loop, "decode_body", decode)
    poison = rig.broker.publish(QUEUE, b'{"kills": "the daemon"}', {"redelivered": "true"})
    with pytest.raises(_Died):
        rig.drain(timeout_s=2)
    # The death was recorded before the decoding that caused it: after max_deliveries such
    # deaths the message is dead-lettered unprocessed instead of killing the daemon forever.
    assert rig.ledger.starts([poison]) == {poison: 1}


def test_messages_of_a_queue_unsubscribed_by_a_reload_are_handed_back_not_dead_lettered(
    rig: Rig,
) -> None:
    for k in range(1, 4):
        rig.broker.publish(QUEUE, body(event(k, k)))
    swapped = threading.Event()

    rounds_after = []

    def reload_dropping_crm() -> None:
        if swapped.is_set():
            rounds_after.append(1)
            return
        if not rig.broker.acknowledged():
            return
        swapped.set()
        other = dataclasses.replace(CUSTOMERS, name="other", source_system="erp")
        rig.loop.swap(Router([other], rig.applier.target_columns), {}, rig.loop._settings)
        rig.broker.unsubscribe(QUEUE)

    rig.loop._settings = ApplyConfig(
        1, 5, "syncd_positions", 5.0, 3, "__debezium_unavailable_value"
    )  # one message a batch
    rig.between_batches = reload_dropping_crm
    # Until the loop went round twice after the reload: past the batch decoded ahead of it.
    rig.run_until(lambda: len(rounds_after) >= 2, timeout_s=5)
    assert len(rounds_after) >= 2
    attempted = [letter for letters in rig.broker.attempted for letter in letters]
    # None of them is "no-mapping": they are the broker's again, for whoever consumes the queue.
    assert attempted == []
    assert rig.broker.unsettled() == 2
