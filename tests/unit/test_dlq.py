"""Dead-letter tooling without a broker: choosing letters, replay headers, the table."""

from __future__ import annotations

import io
import json

import pytest

from syncd.broker import Message
from syncd.broker.queues import SELECTOR_MAX_CHARS, id_selector, selector_chunks
from syncd.commands.dlq import confirm
from syncd.deadletter.review import (
    DeadLetter,
    Selection,
    SelectionError,
    fit,
    format_letter,
    format_table,
    replay_batches,
    replay_headers,
    replay_message,
    replayable,
    resolve,
    select,
    whole_transactions,
)

QUEUE = "/queue/syncd.DLQ"


def letter(
    number: int,
    *,
    mapping: str = "customers",
    error_class: str = "rejected",
    error: str = "boom",
    body: bytes = b'{"op":"c"}',
    extra: dict[str, str] | None = None,
) -> DeadLetter:
    message_id = f"ID:host-40009-1764000000000-4:1:1:1:{number}"
    headers = {
        "message-id": message_id,
        "destination": QUEUE,
        "subscription": "tool-1",
        "content-type": "application/json",
        "content-length": str(len(body)),
        "persistent": "true",
        "priority": "4",
        "timestamp": "1764000000000",
        "expires": "0",
        "syncd-error": error,
        "syncd-error-class": error_class,
        "syncd-mapping": mapping,
        "syncd-key": f"[{number}]",
        "syncd-original-destination": "/queue/syncd.crm",
        "syncd-original-message-id": f"ID:publisher-1:1:1:1:{number}",
        "syncd-failed-at": "2026-03-01T10:00:00.123+00:00",
        "syncd-group": f"public.customers:[{number}]",
        **(extra or {}),
    }
    return DeadLetter(Message(body, headers, QUEUE, message_id, message_id, 0))


LETTERS = [
    letter(1),
    letter(2, mapping="orders"),
    letter(12, error_class="decode", mapping=""),
    letter(22, mapping="orders", error_class="retries-exhausted"),
]


# -- replay headers ------------------------------------------------------------------------


def test_replay_keeps_the_application_headers_and_drops_the_failure_and_delivery_ones() -> None:
    dead = letter(7, extra={"syncd-attempts": "5", "syncd-event-index": "2", "x-tenant": "eu"})
    headers = replay_headers(dead.message.headers)
    assert headers == {
        "content-type": "application/json",
        "syncd-group": "public.customers:[7]",
        "x-tenant": "eu",
        "JMSXGroupID": "public.customers:[7]",
        "persistent": "true",
        "syncd-replayed-from": "ID:host-40009-1764000000000-4:1:1:1:7",
    }


def test_replay_without_a_group_sets_no_group() -> None:
    headers = dict(letter(1).message.headers)
    del headers["syncd-group"]
    assert "JMSXGroupID" not in replay_headers(headers)


def test_a_letter_replayed_before_names_its_newest_dead_letter() -> None:
    again = letter(3, extra={"syncd-replayed-from": "ID:old-dead-letter"})
    assert replay_headers(again.message.headers)["syncd-replayed-from"] == again.id


def test_replay_message_goes_to_the_original_destination_with_the_body_untouched() -> None:
    body = b'{"op": "c",  "after": {"id": 1, "name": "\xc3\xa9"}}'
    message = letter(1, body=body).message
    replayed = replay_message(message)
    assert replayed.destination == "/queue/syncd.crm"
    assert replayed.body == body


def test_letters_without_an_original_destination_are_not_replayable() -> None:
    lost = letter(9, extra={"syncd-original-destination": ""})
    ok, stuck = replayable([letter(1), lost])
    assert [d.id for d in ok] == [letter(1).id] and stuck == [lost]
    with pytest.raises(SelectionError):
        replay_message(lost.message)


# -- selection -----------------------------------------------------------------------------


def test_an_id_resolves_exactly_or_by_a_unique_suffix() -> None:
    assert resolve(LETTERS, LETTERS[1].id, QUEUE) is LETTERS[1]
    assert resolve(LETTERS, "1:1:1:12", QUEUE) is LETTERS[2]
    assert resolve(LETTERS, ":1", QUEUE) is LETTERS[0]


def test_an_exact_id_wins_over_a_longer_id_that_ends_with_it() -> None:
    short = letter(5)
    longer = DeadLetter(
        Message(b"", {}, QUEUE, "X" + short.id, "X" + short.id, 0)  # ends with short's id
    )
    assert resolve([longer, short], short.id, QUEUE) is short


def test_an_ambiguous_or_unknown_id_is_an_error_that_says_so() -> None:
    with pytest.raises(SelectionError, match="ambiguous: 3 dead letters end with it"):
        resolve(LETTERS, "2", QUEUE)  # ...:2, ...:12 and ...:22
    with pytest.raises(SelectionError, match=f"no dead letter 1:1:99 on {QUEUE}"):
        resolve(LETTERS, "1:1:99", QUEUE)


def test_select_by_mapping_by_class_and_both() -> None:
    def ids(selection: Selection) -> list[str]:
        return [d.id[-2:].lstrip(":") for d in select(LETTERS, selection, QUEUE)]

    assert ids(Selection(mapping="orders")) == ["2", "22"]
    assert ids(Selection(error_class="decode")) == ["12"]
    assert ids(Selection(mapping="orders", error_class="retries-exhausted")) == ["22"]
    assert ids(Selection(everything=True)) == ["1", "2", "12", "22"]


def test_select_by_ids_keeps_queue_order_and_takes_each_once() -> None:
    chosen = select(LETTERS, Selection(ids=("1:1:1:22", "1:1:1:1", LETTERS[3].id)), QUEUE)
    assert chosen == [LETTERS[0], LETTERS[3]]


def test_select_with_one_unknown_id_chooses_nothing() -> None:
    with pytest.raises(SelectionError, match="no dead letter"):
        select(LETTERS, Selection(ids=("1:1:1:1", "nope")), QUEUE)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (Selection(), "choose the dead letters"),
        (Selection(ids=("x",), everything=True), "not both"),
        (Selection(ids=("x",), mapping="m"), "not both"),
        (Selection(everything=True, error_class="decode"), "--all takes every dead letter"),
    ],
)
def test_replay_and_purge_need_exactly_one_way_of_choosing(
    selection: Selection, message: str
) -> None:
    with pytest.raises(SelectionError, match=message):
        selection.require_choice()


def test_a_choice_by_filters_alone_is_enough() -> None:
    Selection(mapping="orders", error_class="decode").require_choice()
    Selection(ids=("1",)).require_choice()
    Selection(everything=True).require_choice()


# -- formatting ----------------------------------------------------------------------------


def test_the_table_fits_in_its_width_and_cuts_long_cells_with_an_ellipsis() -> None:
    long_error = "duplicate key value violates unique constraint " * 10
    letters = [letter(1, error=long_error, mapping="m" * 40), letter(2)]
    table = format_table(letters, width=160)
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "FAILED", "AT", "(UTC)", "CLASS", "MAPPING", "KEY", "ERROR"]
    assert all(len(line) <= 160 for line in lines)
    assert len(lines[1]) == 160 and lines[1].endswith("…")
    assert "m" * 23 + "…" in lines[1]
    assert "2026-03-01 10:00:00" in lines[1]
    assert lines[2].endswith("boom")


def test_the_table_shows_a_long_id_by_its_end_which_resolves() -> None:
    long_id = "ID:" + "a-very-long-broker-host-name.example.org-" * 2 + "40009-17640000-4:1:1:1:1"
    dead = DeadLetter(Message(b"", {"syncd-error": "x"}, QUEUE, long_id, long_id, 0))
    cell = format_table([dead]).splitlines()[1].split()[0]
    assert cell.startswith("…") and len(cell) == 48
    assert resolve([dead], cell[1:], QUEUE) is dead


def test_fit_flattens_to_one_line() -> None:
    assert fit("a\n  b\tc", 10) == "a b c"
    assert fit("abcdef", 4) == "abc…"


def test_show_lists_the_explaining_headers_first_and_pretty_prints_a_json_body() -> None:
    text = format_letter(letter(1, body=b'{"op":"c","after":{"id":1}}'))
    head, body = text.split("\n\n", 1)
    names = [line.split()[0] for line in head.splitlines()]
    assert names[:4] == ["syncd-error", "syncd-error-class", "syncd-mapping", "syncd-key"]
    assert "subscription" not in names  # the tool's own browse, not the letter's
    assert json.loads(body) == {"op": "c", "after": {"id": 1}}
    assert body.startswith('{\n  "op": "c"')


def test_show_prints_a_body_that_is_not_json_as_it_is() -> None:
    assert format_letter(letter(1, body=b"not { json")).endswith("\n\nnot { json")


# -- selectors and confirmation ------------------------------------------------------------


def test_the_id_selector_quotes_each_id() -> None:
    assert id_selector(["ID:a:1", "it's"]) == "JMSMessageID IN ('ID:a:1', 'it''s')"


def test_selector_chunks_keep_order_and_stay_under_the_header_limit() -> None:
    ids = [f"ID:some-broker-host-{n:04}-1764000000000-4:1:1:1:{n}" for n in range(1000)]
    chunks = list(selector_chunks(ids))
    assert [i for chunk in chunks for i in chunk] == ids
    assert all(len(id_selector(chunk)) <= SELECTOR_MAX_CHARS for chunk in chunks)
    assert all(len(chunk) <= 100 for chunk in chunks)


def test_only_a_typed_yes_confirms() -> None:
    assert confirm("? ", io.StringIO("yes\n"))
    assert not confirm("? ", io.StringIO("y\n"))
    assert not confirm("? ", io.StringIO(""))


# --- whole transactions -----------------------------------------------------------------------


def tx_letter(number: int, tx: str | None, part: int = 1) -> DeadLetter:
    extra = {"syncd-tx-id": tx, "syncd-tx-part": str(part)} if tx else {}
    return letter(number, extra=extra)


def test_choosing_one_part_of_a_transaction_replays_every_part_in_order() -> None:
    browsed = [tx_letter(1, "t1", 1), tx_letter(2, None), tx_letter(3, "t1", 2), tx_letter(4, "t2")]
    chosen = whole_transactions([browsed[2]], browsed)
    assert [x.header("syncd-tx-part") for x in chosen] == ["1", "2"]
    assert [x.id for x in whole_transactions([browsed[1]], browsed)] == [browsed[1].id]
    replayed = replay_headers(chosen[0].message.headers)
    assert replayed["syncd-tx-id"] == "t1" and replayed["syncd-tx-part"] == "1"


def test_replay_batches_never_split_a_transaction() -> None:
    letters = [tx_letter(n, None) for n in range(90)]
    letters += [tx_letter(100 + n, "big", n + 1) for n in range(30)]
    letters += [tx_letter(200 + n, None) for n in range(5)]
    batches = replay_batches(letters)
    assert [len(b) for b in batches] == [90, 35]
    assert [x.id for b in batches for x in b] == [x.id for x in letters]
    huge = [tx_letter(n, "huge", n + 1) for n in range(150)]
    assert [len(b) for b in replay_batches([tx_letter(999, None), *huge])] == [1, 150]
