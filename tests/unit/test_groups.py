"""The message group of an event: one spelling for the publisher, the captures and replay."""

from __future__ import annotations

from decimal import Decimal

from syncd.capture import group_for
from syncd.events import decode_event
from syncd.groups import DIGEST_MARK, MAX_GROUP_BYTES, group_headers, group_id, group_of_event
from syncd.mapping import Mapping, OnDelete
from syncd.routing import Router


def test_table_and_key_as_the_positions_table_writes_the_key() -> None:
    assert group_id("public.customers", [7]) == "public.customers:[7]"
    assert group_id("public.customers", ["Z-9"]) == 'public.customers:["Z-9"]'


def test_a_composite_key_with_a_null_keeps_its_parts_apart() -> None:
    assert group_id("s.t", [1, None]) == "s.t:[1,null]"
    assert group_id("s.t", [None, 1]) != group_id("s.t", [1, None])
    assert group_id("s.t", ["1", 1]) != group_id("s.t", [1, "1"])


def test_unicode_stays_and_control_characters_are_escaped_for_a_header() -> None:
    assert group_id("s.t", ["Ærø 🙂"]) == 's.t:["Ærø 🙂"]'
    nul = group_id("s.t", ["a\x00b\nc"])
    assert "\x00" not in nul and "\n" not in nul
    assert nul == 's.t:["a\\u0000b\\nc"]'


def test_numbers_of_one_value_share_a_group() -> None:
    assert group_id("s.t", [Decimal("1.50")]) == group_id("s.t", [Decimal("1.5")])


def test_an_event_without_a_key_is_grouped_by_its_table() -> None:
    assert group_id("public.customers", None) == "public.customers"


def test_a_very_long_key_becomes_a_digest_that_fits_a_header() -> None:
    long = group_id("public.docs", ["x" * 20_000])
    assert long.startswith("public.docs:" + DIGEST_MARK)
    assert len(long.encode()) <= MAX_GROUP_BYTES
    assert long == group_id("public.docs", ["x" * 20_000])  # the same key, the same group
    assert long != group_id("public.docs", ["x" * 20_001])
    # Multi-byte text is measured in bytes, as the header travels.
    assert group_id("s.t", ["é" * 200]).startswith("s.t:" + DIGEST_MARK)
    assert group_id("s.t", ["é" * 100]) == 's.t:["' + "é" * 100 + '"]'
    assert len(group_id("t" * 400, [1]).encode()) <= MAX_GROUP_BYTES
    assert len(group_id("t" * 400, None).encode()) <= MAX_GROUP_BYTES


def test_capture_and_publisher_spell_one_keys_group_alike() -> None:
    mapping = Mapping(
        name="customers",
        source_system="crm",
        source_table="public.customers",
        target_database="warehouse",
        target_table="customers",
        key=("id", "region"),
        columns=None,
        on_delete=OnDelete("delete"),
        file="test.yaml",
        line=1,
    )
    event = decode_event(
        {
            "op": "u",
            "after": {"id": 7, "region": "eu", "name": "x"},
            "source": {"name": "crm", "schema": "public", "table": "customers", "seq": 1},
        }
    )
    router = Router([mapping])
    assert group_of_event(router, event) == group_for("public", "customers", [7, "eu"])
    # A key with a NULL part names no row (such an event is dead-lettered): the table's group.
    null_key = decode_event({**event.raw, "after": {"id": 7, "region": None}})
    assert group_of_event(router, null_key) == "public.customers"
    no_key = decode_event({**event.raw, "after": {"name": "x"}})  # the key's columns missing
    assert group_of_event(router, no_key) == "public.customers"
    other = decode_event({**event.raw, "source": {**event.raw["source"], "table": "orders"}})
    assert group_of_event(router, other) == "public.orders"  # no mapping


def test_headers_carry_the_group_twice() -> None:
    assert group_headers("g") == {"JMSXGroupID": "g", "syncd-group": "g"}
