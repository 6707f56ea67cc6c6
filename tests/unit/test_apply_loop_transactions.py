"""Whole source transactions through the apply loop, on the in-memory broker and SQLite.

The ``rig`` fixture is test_apply_loop's: its target has ``CHECK (score >= 0)``, so an event
with a negative score is one the target rejects.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

import syncd.pipeline.transactions
from syncd.apply.stream import Stream
from syncd.broker.parts import part_headers
from syncd.errors import TargetUnavailable
from tests.unit.test_apply_loop import QUEUE, Rig, body, event, rig

__all__ = ["rig"]


def publish_tx(rig: Rig, tx: str, parts: list[list[dict[str, Any]]]) -> list[str]:
    """A transaction as syncd's capture sends it: parts in order, the count on the last."""
    return [
        rig.broker.publish(QUEUE, body(events), part_headers(tx, n, n == len(parts)))
        for n, events in enumerate(parts, start=1)
    ]


def test_a_transaction_longer_than_a_batch_is_applied_and_acknowledged_in_one(rig: Rig) -> None:
    # batch_max_messages is 50: the batch grows to the transaction's end instead of cutting it.
    ids = publish_tx(rig, "t1", [[event(k, k)] for k in range(1, 61)])
    rig.drain()
    assert rig.rows() == {k: ("x", 1) for k in range(1, 61)}
    assert [s.acknowledged for s in rig.broker.settled] == [ids]
    assert rig.stats.metrics.transactions_applied._value.get() == 1


def test_a_transaction_the_target_rejects_in_part_is_dead_lettered_whole(rig: Rig) -> None:
    publish_tx(rig, "t0", [[event(1, 1)]])
    bad = publish_tx(rig, "t1", [[event(2, 2), event(3, 3)], [event(4, 4, score=-1)]])
    publish_tx(rig, "t2", [[event(5, 5)]])
    rig.drain()
    assert rig.rows() == {1: ("x", 1), 5: ("x", 1)}  # nothing of t1
    letters = rig.dead_letters()
    assert [letter.headers["syncd-original-message-id"] for letter in letters] == bad
    for n, letter in enumerate(letters, start=1):
        assert letter.headers["syncd-tx-id"] == "t1" and letter.headers["syncd-tx-part"] == str(n)
        assert letter.headers["syncd-error-class"] == "rejected"
        error = letter.headers["syncd-error"]
        assert error.startswith("transaction t1 dead-lettered whole (2 messages): ")
        assert "key [4]" in error and "CHECK" in error, error  # names the event at fault
        assert letter.headers["syncd-key"] == "[4]"
    # Each message went whole, body untouched: a replay sends the transaction as it came.
    assert [json.loads(letter.body) for letter in letters] == [
        [event(2, 2), event(3, 3)],
        [event(4, 4, score=-1)],
    ]


def test_an_event_that_cannot_be_mapped_dead_letters_its_whole_transaction(rig: Rig) -> None:
    publish_tx(rig, "t1", [[event(1, 1)], [event(2, 2), {"op": "c", "source": {}}]])
    rig.drain()
    assert rig.rows() == {}
    letters = rig.dead_letters()
    assert len(letters) == 2 and all("part 2 event 1" in x.headers["syncd-error"] for x in letters)
    assert {x.headers["syncd-error-class"] for x in letters} == {"decode"}


def test_events_of_unmapped_tables_go_alone_and_the_rest_applies_whole(rig: Rig) -> None:
    other = {"op": "c", "after": {"id": 1}, "source": {"name": "crm", "table": "audit", "seq": 1}}
    publish_tx(rig, "t1", [[event(1, 1), other]])
    publish_tx(rig, "t2", [[other], [other]])  # no event of a mapped table at all
    rig.drain()
    assert rig.rows() == {1: ("x", 1)}
    letters = rig.dead_letters()
    assert [x.headers["syncd-error-class"] for x in letters] == ["no-mapping"] * 3


@pytest.mark.parametrize(
    ("numbers", "problem"),
    [
        ([(1, None), (3, 3), (2, None)], "got part 1, then part 3 again or out of order"),
        ([(1, None), (2, None), (2, 3), (3, 3)], "then part 2 again or out of order"),
        ([(1, 3), (2, 2)], "part 2 says 2 parts, an earlier one 3"),
        ([(2, 2)], "part 2 came first"),
    ],
)
def test_parts_that_do_not_make_a_transaction_are_dead_lettered_whole_never_applied(
    rig: Rig, numbers: list[tuple[int, int | None]], problem: str
) -> None:
    for key, (number, parts) in enumerate(numbers, start=1):
        headers = {"syncd-tx-id": "t1", "syncd-tx-part": str(number)}
        if parts is not None:
            headers["syncd-tx-parts"] = str(parts)
        rig.broker.publish(QUEUE, body([event(key, key)]), headers)
    publish_tx(rig, "t2", [[event(9, 9)]])
    rig.drain()
    assert rig.rows() == {9: ("x", 1)}
    letters = rig.dead_letters()
    assert len(letters) == len(numbers)
    assert {x.headers["syncd-error-class"] for x in letters} == {"transaction"}
    assert all(problem in x.headers["syncd-error"] for x in letters), letters[0].headers


def test_a_transaction_whose_last_part_never_comes_is_dead_lettered_after_the_wait(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(syncd.pipeline.transactions, "REST_WAIT_S", 0.2)
    rig.broker.publish(QUEUE, body([event(1, 1)]), {"syncd-tx-id": "t1", "syncd-tx-part": "1"})
    rig.drain()
    assert rig.rows() == {}
    (letter,) = rig.dead_letters()
    assert "got part 1; its last part did not come within" in letter.headers["syncd-error"]


def test_a_copy_sent_again_from_part_one_is_applied_once_and_the_first_acknowledged(
    rig: Rig,
) -> None:
    first = [rig.broker.publish(QUEUE, body([event(1, 1)]), part_headers("t1", 1, False))]
    again = publish_tx(rig, "t1", [[event(1, 1)], [event(2, 2)]])
    rig.drain()
    assert rig.rows() == {1: ("x", 1), 2: ("x", 1)}
    assert rig.dead_letters() == []
    assert rig.broker.acknowledged() == first + again


def test_a_lost_acknowledgement_redelivers_the_whole_transaction_harmlessly(rig: Rig) -> None:
    rig.broker.fail_settles = 1  # the connection dies as the first settle is sent
    publish_tx(rig, "t1", [[event(1, 1, score=5)], [event(1, 2, score=7)], [event(2, 3)]])
    rig.drain()
    assert rig.rows() == {1: ("x", 7), 2: ("x", 1)}
    assert rig.dead_letters() == []
    assert rig.broker.settled[-1].acknowledged and len(rig.broker.settled) == 1


def test_small_transactions_share_one_target_transaction_and_a_rejected_one_goes_alone(
    rig: Rig,
) -> None:
    commits: list[int] = []
    sa.event.listen(rig.applier._engine, "commit", lambda conn: commits.append(1))
    for n in range(1, 11):
        score = -1 if n == 7 else n
        publish_tx(rig, f"t{n}", [[event(n, n, score=score), event(100 + n, n)]])
    rig.drain()
    assert set(rig.rows()) == {n for n in range(1, 11) if n != 7} | {
        100 + n for n in range(1, 11) if n != 7
    }
    assert len(rig.dead_letters()) == 1
    # One commit for the batch would be ideal; halving at transaction boundaries takes a few.
    assert 1 <= len(commits) <= 8, commits


def test_a_transaction_the_daemon_died_on_is_dead_lettered_whole_as_a_crash_loop(
    rig: Rig,
) -> None:
    parts = [[event(1, 1)], [event(2, 2)], [event(3, 3)]]
    ids = [
        rig.broker.publish(
            QUEUE, body(events), {**part_headers("t1", n, n == 3), "redelivered": "true"}
        )
        for n, events in enumerate(parts, start=1)
    ]
    rig.ledger.begin([ids[1]])  # two deaths recorded while processing its second part
    rig.ledger.begin([ids[1]])
    publish_tx(rig, "t2", [[event(9, 9)]])
    rig.drain()
    assert rig.rows() == {9: ("x", 1)}
    letters = rig.dead_letters()
    assert [x.headers["syncd-original-message-id"] for x in letters] == ids
    assert {x.headers["syncd-error-class"] for x in letters} == {"crash-loop"}
    assert "this transaction (3 messages)" in letters[0].headers["syncd-error"]
    assert rig.ledger.starts(ids) == {}


def test_a_redelivered_transaction_is_processed_whole_under_the_ledger(rig: Rig) -> None:
    ids = [
        rig.broker.publish(
            QUEUE, body([event(n, n)]), {**part_headers("t1", n, n == 2), "redelivered": "true"}
        )
        for n in (1, 2)
    ]
    rig.ledger.begin([ids[0]])  # one death: processed again, alone, but whole
    rig.drain()
    assert rig.rows() == {1: ("x", 1), 2: ("x", 1)}
    assert [s.acknowledged for s in rig.broker.settled] == [ids]
    metrics = rig.stats.metrics
    assert metrics.transactions_applied._value.get() == 1
    assert metrics.transaction_in_hand._value.get() == 2


def test_a_large_transaction_is_applied_part_by_part_in_one_target_transaction(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    sa.event.listen(rig.applier._engine, "commit", lambda conn: commits.append(1))
    decoded: list[int] = []
    real = rig.loop._decode

    def decode(item: Any) -> None:
        if item.message.headers["syncd-tx-id"] == "big":
            # Each part decoded when it is applied: never two parts' events in hand at once.
            assert all(not other.changes for other in item.unit.items if other is not item)
            decoded.append(int(item.message.headers["syncd-tx-part"]))
        real(item)

    monkeypatch.setattr(rig.loop, "_decode", decode)
    publish_tx(rig, "t0", [[event(100, 1)]])
    publish_tx(rig, "big", [[event(k, k) for k in range(n, n + 10)] for n in (1, 11, 21)])
    publish_tx(rig, "t2", [[event(100, 2, name="later")]])
    rig.drain()
    assert rig.rows() == {**{k: ("x", 1) for k in range(1, 31)}, 100: ("later", 1)}
    assert decoded == [1, 2, 3]
    assert len(commits) <= 3  # t0, the large one, t2 (the small ones may share)
    assert rig.stats.metrics.transactions_applied._value.get() == 3


def test_a_large_transaction_rejected_in_its_last_part_leaves_nothing(rig: Rig) -> None:
    parts = [[event(k, k) for k in range(n, n + 10)] for n in (1, 11)]
    parts.append([event(21, 21), event(22, 22, score=-5)])
    ids = publish_tx(rig, "big", parts)
    rig.drain()
    assert rig.rows() == {}
    letters = rig.dead_letters()
    assert [x.headers["syncd-original-message-id"] for x in letters] == ids
    error = letters[0].headers["syncd-error"]
    assert error.startswith("transaction big dead-lettered whole (3 messages): part 3: ")
    assert "key [22]" in error and "CHECK" in error, error


def test_a_large_transaction_that_fails_for_a_while_is_applied_again_from_its_bodies(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_apply = Stream.apply
    failures = [1]

    def apply(self: Stream, changes: Any) -> Any:
        if failures and len(changes) == 10 and changes[0].key == "[11]":
            failures.pop()  # the second part, once: a deadlock, say
            raise TargetUnavailable("database warehouse: deadlock detected")
        return real_apply(self, changes)

    monkeypatch.setattr(Stream, "apply", apply)
    publish_tx(rig, "big", [[event(k, k) for k in range(n, n + 10)] for n in (1, 11, 21)])
    rig.drain()
    assert rig.rows() == {k: ("x", 1) for k in range(1, 31)}
    assert rig.dead_letters() == [] and not failures
    assert rig.stats.metrics.retries._value.get() == 1
