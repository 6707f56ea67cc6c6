import json
from typing import Any

import pytest

from syncd.apply.plan import Verdict, plan_batch, position_guard
from syncd.change import Change, key_text
from syncd.events import ChangeEvent
from syncd.mapping import Mapping, OnDelete

MAPPING = Mapping(
    name="customers",
    source_system="crm",
    source_table="public.customers",
    target_database="warehouse",
    target_table="dim_customer",
    key=("id",),
    columns=None,
    on_delete=OnDelete("delete"),
    file="mappings/crm.yaml",
    line=2,
)


def change(key: int, position: int, row: dict[str, Any] | None = None) -> Change:
    delete = row is None
    event = ChangeEvent(
        op="d" if delete else "u",
        before={"id": key} if delete else None,
        after=None if delete else {"id": key, **row},  # type: ignore[dict-item]
        system="crm",
        schema="public",
        table="customers",
        position=position,
        event_id=f"crm@{position}",
        source_ts_ms=None,
        raw={},
    )
    return Change(
        mapping=MAPPING,
        key=key_text([key]),
        target_key={"id": key},
        position=position,
        delete=delete,
        row=None if delete else {"id": key, **row},  # type: ignore[dict-item]
        event=event,
    )


def test_position_guard_applies_only_newer_positions() -> None:
    assert position_guard(None, 1) is Verdict.APPLIED
    assert position_guard(4, 5) is Verdict.APPLIED
    assert position_guard(5, 5) is Verdict.DUPLICATE
    assert position_guard(5, 4) is Verdict.STALE


def test_key_text_is_canonical_json() -> None:
    assert key_text([7]) == "[7]"
    assert key_text(("a", 1)) == '["a",1]'


def test_later_upserts_of_a_key_merge_into_one_row() -> None:
    actions, verdicts = plan_batch(
        [change(1, 10, {"name": "a", "email": "x"}), change(1, 11, {"name": "b"})], {}
    )
    assert verdicts == [Verdict.APPLIED, Verdict.APPLIED]
    action = actions["[1]"]
    assert action.row == {"id": 1, "name": "b", "email": "x"}
    assert (action.position, action.delete, action.replace) == (11, False, False)


def test_out_of_order_arrival_in_one_batch_keeps_the_newest_and_calls_the_older_stale() -> None:
    actions, verdicts = plan_batch(
        [change(1, 12, {"name": "new"}), change(1, 11, {"name": "old"})], {}
    )
    assert verdicts == [Verdict.APPLIED, Verdict.STALE]
    assert actions["[1]"].row["name"] == "new"


def test_stored_position_turns_replays_into_duplicates_and_stale_skips() -> None:
    actions, verdicts = plan_batch(
        [change(1, 5, {"name": "dup"}), change(1, 3, {"name": "old"}), change(2, 6, {"n": 1})],
        {"[1]": 5},
    )
    assert verdicts == [Verdict.DUPLICATE, Verdict.STALE, Verdict.APPLIED]
    assert list(actions) == ["[2]"]


def test_stale_create_after_a_stored_delete_changes_nothing() -> None:
    # The positions table keeps deleted keys, so the stored position 9 is that of the delete.
    actions, verdicts = plan_batch([change(1, 2, {"name": "resurrected?"})], {"[1]": 9})
    assert verdicts == [Verdict.STALE]
    assert actions == {}


def test_delete_then_create_in_one_batch_replaces_the_row() -> None:
    actions, verdicts = plan_batch(
        [change(1, 1, {"name": "a"}), change(1, 2), change(1, 3, {"name": "c"})], {}
    )
    assert verdicts == [Verdict.APPLIED] * 3
    action = actions["[1]"]
    assert (action.delete, action.replace, action.row) == (False, True, {"id": 1, "name": "c"})


def test_upsert_then_delete_ends_as_a_delete_that_keeps_the_row_for_soft_deletes() -> None:
    actions, _ = plan_batch([change(1, 1, {"name": "a"}), change(1, 2)], {})
    action = actions["[1]"]
    assert (action.delete, action.position, action.row) == (True, 2, {"id": 1, "name": "a"})


def test_duplicate_within_one_batch_is_counted_once() -> None:
    actions, verdicts = plan_batch([change(1, 4, {"name": "a"}), change(1, 4, {"name": "a"})], {})
    assert verdicts == [Verdict.APPLIED, Verdict.DUPLICATE]
    assert len(actions) == 1


@pytest.mark.parametrize(
    "values",
    [[1], [-5], [10**20], ["a"], ['é"\\\n\x00\u2028'], ["😀"], [1.5], [True], [None], [1, "a"]],
)
def test_key_text_is_compact_json_on_the_fast_path_too(values: list[Any]) -> None:
    expected = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    assert key_text(values) == expected
