"""Framing a batch into units: whole source transactions, broken ones, superseded copies."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import syncd.capture.logical_atomic
from syncd.broker import Message
from syncd.broker.parts import TX_ID, TX_PART, TX_PARTS
from syncd.broker.stomp import StompBroker
from syncd.capture import Captured
from syncd.capture.logical_atomic import part_message, transaction_parts
from syncd.config import DEFAULTS, BrokerConfig
from syncd.pipeline.transactions import Framing, Unit, UnitKind, frame

QUEUE = "/queue/syncd.bank"


@dataclass
class Item:
    message: Message
    unit: Unit | None = None


def part(
    tx: str | None,
    number: int | str | None = None,
    parts: int | str | None = None,
    queue: str = QUEUE,
    generation: int = 1,
) -> Item:
    headers: dict[str, str] = {}
    if tx is not None:
        headers[TX_ID] = tx
    if number is not None:
        headers[TX_PART] = str(number)
    if parts is not None:
        headers[TX_PARTS] = str(parts)
    return Item(Message(b"[]", headers, queue, f"id-{id(headers)}", "", generation))


def kinds(items: list[Item]) -> list[tuple[str, str | None, int]]:
    """Each unit as (kind, transaction, how many messages)."""
    return [(u.kind.value, u.tx_id, len(u.items)) for u in frame(items)]


def test_parts_in_order_make_one_whole_unit_between_single_messages() -> None:
    items = [part(None), part("t1", 1), part("t1", 2), part("t1", 3, 3), part(None)]
    assert kinds(items) == [("single", None, 1), ("whole", "t1", 3), ("single", None, 1)]
    assert all(item.unit is not None for item in items)


def test_a_count_said_early_must_be_kept_and_ends_the_transaction() -> None:
    assert kinds([part("t1", 1, 2), part("t1", 2, 2), part("t2", 1, 1)]) == [
        ("whole", "t1", 2),
        ("whole", "t2", 1),
    ]


def test_transactions_of_two_queues_may_interleave() -> None:
    other = "/queue/syncd.shop"
    items = [part("a", 1), part("b", 1, queue=other), part("a", 2, 2), part("b", 2, 2, other)]
    assert sorted(kinds(items)) == [("whole", "a", 2), ("whole", "b", 2)]


def test_the_framing_is_open_until_the_last_part_and_then_waits_the_usual() -> None:
    framing = Framing()
    framing.add(part("t1", 1))
    assert framing.open and framing.wait_s(0.005) > 1
    framing.add(part("t1", 2, 2))
    assert not framing.open and framing.wait_s(0.005) == 0.005


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([part("t1", 1), part("t1", 3, 3)], "got part 1, then part 3 again or out of order"),
        ([part("t1", 1), part("t1", 2), part("t1", 2)], "got parts 1 to 2, then part 2 again"),
        ([part("t1", 2, 2)], "part 2 came first"),
        ([part("t1", 1), part("t1", 2, 1)], "part 2 says there are 1 parts"),
        ([part("t1", 1, 3), part("t1", 2, 2)], "part 2 says 2 parts, an earlier one 3"),
        ([part("t1", 1), part(None)], "got part 1, then a message outside any transaction"),
        ([part("t1", 1), part("t1", 2), part("t2", 1, 1)], "got parts 1 to 2, then transaction t2"),
        ([part("t1", 1)], "got part 1; its last part did not come within"),
        ([part("t1")], "syncd-tx-part is missing"),
        ([part("t1", "0")], "syncd-tx-part is '0', not a whole number from 1"),
        ([part("t1", "-1")], "not a whole number"),
        ([part("t1", "1e3")], "not a whole number"),
        ([part("t1", "١")], "not a whole number"),  # an Arabic-Indic digit one
        ([part("t1", "9" * 12)], "not a whole number"),
        ([part("t1", 1, "two")], "syncd-tx-parts is 'two'"),
    ],
)
def test_what_is_not_a_whole_transaction_is_broken_and_says_why(
    items: list[Item], problem: str
) -> None:
    broken = [u for u in frame(items) if u.kind is UnitKind.BROKEN]
    assert len(broken) == 1 and broken[0].tx_id == "t1"
    assert broken[0].problem is not None and problem in broken[0].problem
    assert not any(u.kind is UnitKind.WHOLE and u.tx_id == "t1" for u in frame(items))


def test_the_rest_of_a_broken_transaction_goes_with_it() -> None:
    items = [part("t1", 1), part("t1", 3), part("t1", 4), part("t1", 5, 5), part("t2", 1, 1)]
    assert kinds(items) == [("broken", "t1", 4), ("whole", "t2", 1)]


def test_a_transaction_sent_again_from_its_start_supersedes_the_incomplete_copy() -> None:
    items = [part("t1", 1), part("t1", 2), part("t1", 1), part("t1", 2), part("t1", 3, 3)]
    assert kinds(items) == [("superseded", "t1", 2), ("whole", "t1", 3)]


def test_a_whole_transaction_sent_twice_is_two_whole_units() -> None:
    # The publisher's receipt was lost: it sent again; positions make the second harmless.
    items = [part("t1", 1), part("t1", 2, 2), part("t1", 1), part("t1", 2, 2)]
    assert kinds(items) == [("whole", "t1", 2), ("whole", "t1", 2)]


def test_a_new_connection_forgets_what_an_older_one_left_open() -> None:
    items = [part("t1", 1), part("t1", 2), part("t1", 1, generation=2), part("t1", 2, 2, QUEUE, 2)]
    units = frame(items)
    # The older copy stays open (the loop drops its messages: they came over a dead connection).
    assert [(u.kind, len(u.items)) for u in units][-1] == (UnitKind.WHOLE, 2)


def captured(xid: int | None, n: int) -> Captured:
    return Captured({"op": "c", "source": {"txId": xid, "seq": n}}, "g")


def test_an_outbox_batch_becomes_parts_per_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncd.capture.logical_atomic, "PART_EVENTS", 2)
    events = [captured(7, 1), captured(7, 2), captured(7, 3), captured(8, 4), captured(None, 5)]
    parts = list(transaction_parts("bank", events))
    assert [(p.tx_id, p.number, p.last, len(p.events)) for p in parts] == [
        ("bank:7", 1, False, 2),
        ("bank:7", 2, True, 1),
        ("bank:8", 1, True, 1),
        ("bank:None", 1, True, 1),
    ]
    message = part_message("/queue/syncd.bank", "bank", parts[1])
    assert message.headers["syncd-tx-parts"] == "2" and message.headers["syncd-tx-part"] == "2"
    assert message.headers["JMSXGroupID"] == message.headers["syncd-group"] == "syncd-tx:bank"
    assert json.loads(message.body) == [events[2].event]


def test_atomic_queues_are_subscribed_as_exclusive_consumers() -> None:
    settings = {k: v for k, v in DEFAULTS["broker"].items() if k != "password_file"}
    settings.update(hosts=(("127.0.0.1", 61613),), tls=None)
    broker = StompBroker(BrokerConfig(**settings), exclusive=[QUEUE])
    assert broker._subscribe_headers(QUEUE) == {
        "activemq.prefetchSize": "2000",
        "activemq.exclusive": "true",
    }
    assert broker._subscribe_headers("/queue/syncd.crm") == {"activemq.prefetchSize": "2000"}
