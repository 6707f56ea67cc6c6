"""Hostile values stop at decode or routing, each event alone, with a reason naming where."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from syncd.deadletter.letters import event_body, one_line
from syncd.errors import MappingApplyError
from syncd.events import BadEvent, ChangeEvent, decode_body
from syncd.mapping import ColumnMap, Mapping, OnDelete
from syncd.routing import Router
from syncd.values import TargetLimits, integer_range, may_hide_characters

SOURCE = {"name": "crm", "schema": "public", "table": "customers", "seq": 1}
COLUMNS = frozenset({"id", "name", "small", "big", "ratio", "doc"})


def mapping(columns: tuple[ColumnMap, ...] | None = None) -> Mapping:
    return Mapping(
        "customers", "crm", "public.customers", "warehouse", "dim", ("id",), columns,
        OnDelete("delete"), "test.yaml", 1,
    )  # fmt: skip


def limits(dialect: str) -> TargetLimits:
    types: dict[str, Any] = {
        "postgresql": {"id": postgresql.INTEGER(), "small": postgresql.SMALLINT(),
                       "big": postgresql.BIGINT(), "ratio": postgresql.DOUBLE_PRECISION()},
        "mysql": {"id": mysql.INTEGER(), "small": mysql.TINYINT(unsigned=True),
                  "big": mysql.BIGINT(unsigned=True), "ratio": mysql.DOUBLE()},
        "sqlite": {"id": sa.INTEGER(), "small": sa.SMALLINT(), "big": sa.BIGINT(),
                   "ratio": sa.REAL()},
    }[dialect]  # fmt: skip
    return TargetLimits.reflected(dialect, [{"name": n, "type": t} for n, t in types.items()])  # type: ignore[misc]


def body(after: Any = None, **fields: Any) -> str:
    event = {"op": "c", "after": {"id": 1, "name": "Ana"} if after is None else after}
    event["source"] = {**SOURCE, **fields.pop("source", {})}
    event.update(fields)
    return json.dumps(event)


def one(text: str | bytes) -> ChangeEvent | BadEvent:
    [decoded] = decode_body(text if isinstance(text, bytes) else text.encode())
    return decoded


def routed(text: str, dialect: str, target: Mapping | None = None) -> list[Any]:
    event = one(text)
    assert isinstance(event, ChangeEvent), event
    router = Router([target or mapping()], lambda m: COLUMNS, lambda m: limits(dialect))
    return router.changes_for(event)


def reason(text: str | bytes) -> str:
    decoded = one(text)
    assert isinstance(decoded, BadEvent), decoded
    return str(decoded.error)


# -- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, text",
    [
        ("after.name", body({"id": 1, "name": "\\ud800"})),
        ("after.x\\udfff (a name)", body({"id": 1, "x\\udfff": 1})),
        ("source.table", body(source={"table": "t\\uDBFF"})),
        ("source.name", body(source={"name": "\\udc00crm"})),
        ("after.doc.deep[1]", body({"id": 1, "doc": {"deep": [1, "\\ud800"]}})),
        ("id", body(id="\\ud800")),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_decode_error_naming_where(where: str, text: str) -> None:
    # json.dumps escaped the backslash; un-escape it, as a publisher would have written it.
    message = reason(text.replace("\\\\u", "\\u"))
    assert message.startswith(where) and "lone UTF-16 surrogate" in message
    assert one_line(message).isprintable()


def test_a_surrogate_pair_is_one_character_and_accepted() -> None:
    event = one(body({"id": 1, "name": "\\ud83d\\ude00"}).replace("\\\\u", "\\u"))
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "name": "😀"}


def test_an_escaped_backslash_before_ud800_is_only_text() -> None:
    text = body({"id": 1, "name": "\\ud800"})  # json.dumps wrote "\\ud800": a backslash
    assert may_hide_characters(text)  # the pre-scan's false alarm costs only the walk
    event = one(text)
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "name": "\\ud800"}


def test_clean_bodies_skip_the_walk() -> None:
    assert not may_hide_characters(body({"id": 1, "name": "café 😀 \n", "x": "\\u0001"}))
    assert not may_hide_characters(r'{"a": "\ud83d\ude00 \uD83D\uDE00"}')  # pairs: emoji
    assert may_hide_characters(r'{"a": "\ud83d"}') and may_hide_characters(r'{"a": "\uDE00"}')
    assert may_hide_characters(r'{"a": "\ude00\ud83d"}')  # the wrong way round: two lone ones
    assert may_hide_characters(r'{"a": "\u0000"}')
    # An escaped backslash makes "ud83d" plain text: the low half after it is alone.
    assert may_hide_characters(r'{"a": "\\ud83d\ude00"}')
    assert isinstance(one(r'{"a": "\\ud83d\ude00"}'), BadEvent)


def test_one_bad_event_of_an_array_leaves_its_neighbours() -> None:
    good = json.loads(body())
    text = json.dumps([good, json.loads(body({"id": 2, "name": "x"}))]).replace('"x"', '"\\ud800"')
    first, second = decode_body(text.encode())
    assert isinstance(first, ChangeEvent) and isinstance(second, BadEvent)


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"", "message body is empty"),
        (b"  \n ", "message body is empty"),
        (b"null", "found null"),
        (b'"text"', "found the text"),
        (b"[]", "empty JSON array"),
        (body(before=[1, 2], op="d"), "'before' must be an object or null, found an array"),
        (body(after="row"), "'after' must be an object or null"),
        (body(op=["c"]), "'op' must be one of"),
        (body(op={"c": 1}), "'op' must be one of"),
        (body(source={"seq": "１２３"}), "'source.seq' must be a whole number"),
        (body(source={"seq": "²"}), "'source.seq' must be a whole number"),
        (body(source={"seq": -1}), "'source.seq' must be a whole number"),
        (body(source={"seq": 1.5}), "'source.seq' must be a whole number"),
        (body(source={"seq": 2.0}), "'source.seq' must be a whole number"),
        (body(source={"seq": True}), "'source.seq' must be a whole number"),
        (body(source={"seq": "1e3"}), "'source.seq' must be a whole number"),
        (body(source={"seq": 2**63}), "'source.seq' must be a whole number"),
        (body(source={"ts_ms": 10**20}), "'ts_ms' must be a time"),
    ],
)
def test_malformed_events_are_decode_errors(text: str | bytes, expected: str) -> None:
    try:
        message = reason(text if isinstance(text, bytes) else text.encode())
    except Exception as exc:  # a body that is not JSON at all fails the whole message
        message = str(exc)
    assert expected in message


def test_ascii_digit_text_stays_a_position() -> None:
    event = one(body(source={"seq": "0042"}))
    assert isinstance(event, ChangeEvent) and event.position == 42


def test_a_utf8_bom_is_ignored_and_utf16_is_refused() -> None:
    assert isinstance(one(b"\xef\xbb\xbf" + body().encode()), ChangeEvent)
    with pytest.raises(Exception, match="not JSON"):
        decode_body(body().encode("utf-16"))


def test_text_with_unescaped_surrogates_is_not_utf8_either() -> None:
    with pytest.raises(Exception, match="not JSON"):
        decode_body(body().replace("Ana", "An\udcff"))  # as surrogateescape reads a bad byte


def test_of_duplicate_keys_the_last_wins_as_in_json_parse_and_jsonb() -> None:
    text = '{"op":"c","after":{"id":1,"name":"first","name":"last"},"source":%s}'
    event = one(text % json.dumps(SOURCE))
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "name": "last"}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_decode_without_stopping_anything(literal: str) -> None:
    text = body({"id": 1, "ratio": 0}).replace('"ratio": 0', f'"ratio": {literal}')
    event = one(text)
    assert isinstance(event, ChangeEvent)
    for dialect in ("postgresql", "sqlite", "mysql"):
        routed(text, dialect)  # a float column: how it is written is the encoding's business


# -- routing, per target -------------------------------------------------------------------


def test_nul_is_refused_for_postgresql_naming_the_column_and_kept_elsewhere() -> None:
    text = body({"id": 1, "name": "a\\u0000b"}).replace("\\\\u", "\\u")
    with pytest.raises(MappingApplyError, match=r"after\.name holds a NUL character"):
        routed(text, "postgresql")
    for dialect in ("sqlite", "mysql"):
        [change] = routed(text, dialect)
        assert change.row["name"] == "a\x00b"


def test_nul_in_a_column_the_mapping_does_not_carry_is_harmless() -> None:
    carried = mapping((ColumnMap("id", "id", None), ColumnMap("name", "name", None)))
    text = body({"id": 1, "name": "x", "notes": "a\\u0000b"}).replace("\\\\u", "\\u")
    [change] = routed(text, "postgresql", carried)
    assert change.row == {"id": 1, "name": "x"}


def test_nul_in_a_delete_key_or_the_event_id_is_refused_for_postgresql() -> None:
    text = body(op="d", after=None, before={"id": "k\\u0000"}).replace("\\\\u", "\\u")
    text = text.replace('"after": null, ', "")
    with pytest.raises(MappingApplyError, match=r"before\.id holds a NUL"):
        routed(text, "postgresql")
    with pytest.raises(MappingApplyError, match="the event id holds a NUL"):
        routed(body(id="e\\u0000").replace("\\\\u", "\\u"), "postgresql")


@pytest.mark.parametrize(
    "dialect, column, value, fits",
    [
        ("postgresql", "small", 32767, True),
        ("postgresql", "small", 32768, False),
        ("postgresql", "small", -32769, False),
        ("postgresql", "id", 2**31, False),
        ("postgresql", "big", 2**63 - 1, True),
        ("postgresql", "big", -(2**63) - 1, False),
        ("postgresql", "big", "99999999999999999999", True),  # text: the server's cast decides
        ("postgresql", "name", 10**30, True),  # a text column takes any integer
        ("postgresql", "id", 1e30, False),
        ("postgresql", "id", "NaN", False),
        ("mysql", "small", 255, True),
        ("mysql", "small", -1, False),
        ("mysql", "small", 256, False),
        ("mysql", "big", 2**64 - 1, True),
        ("mysql", "big", 2**64, False),
        # SQLite holds every value in some form: its binder writes what sqlite3 cannot bind
        # (wider integers as their digits, NaN as the text 'NaN'), as README "Types" says.
        ("sqlite", "name", 2**63, True),
        ("sqlite", "ratio", 1e300, True),
        ("sqlite", "id", "NaN", True),
        ("sqlite", "small", 2**70, True),
    ],
)
def test_numbers_outside_the_column_range_are_mapping_errors(
    dialect: str, column: str, value: Any, fits: bool
) -> None:
    literal = value if value != "NaN" else float("nan")
    text = json.dumps({"op": "c", "after": {"id": 1, column: literal}, "source": SOURCE})
    if fits:
        routed(text, dialect)
    else:
        with pytest.raises(MappingApplyError, match=f"column {column}: .* does not fit"):
            routed(text, dialect)


def test_decimal_values_are_checked_like_other_numbers() -> None:
    target = limits("postgresql")
    assert target.row_problem({"small": Decimal("32767"), "id": Decimal("-1E+3")}) is None
    assert "column small" in (target.row_problem({"small": Decimal("32767.5")}) or "")
    assert "column small" in (target.row_problem({"small": Decimal("NaN")}) or "")
    assert "column id" in (target.row_problem({"id": Decimal("Infinity")}) or "")


def test_integer_ranges_follow_the_reflected_types() -> None:
    assert integer_range(mysql.MEDIUMINT(), "mysql") == (-(2**23), 2**23 - 1)
    assert integer_range(mysql.TINYINT(), "mysql") == (-128, 127)
    assert integer_range(mysql.INTEGER(unsigned=True), "mysql") == (0, 2**32 - 1)
    assert integer_range(postgresql.NUMERIC(), "postgresql") is None
    assert integer_range(sa.SMALLINT(), "sqlite") is None  # SQLite: see its binder
    assert integer_range(sa.TEXT(), "postgresql") is None


def test_a_key_too_long_for_the_positions_table_is_a_mapping_error() -> None:
    with pytest.raises(MappingApplyError, match="longer than the 650"):
        routed(body({"id": "k" * 700}), "sqlite")


def test_an_unknown_overlong_column_says_why_it_cannot_exist() -> None:
    # PostgreSQL would cut both to the same 63 bytes: they must never meet as one column.
    name = "a" * 63 + "_but_longer"
    with pytest.raises(MappingApplyError, match="longer than PostgreSQL's 63 bytes"):
        routed(body({"id": 1, name: 1}), "postgresql")
    with pytest.raises(MappingApplyError, match="has no column x\\\\x00y"):
        routed(body({"id": 1, "x\\u0000y": 1}).replace("\\\\u", "\\u"), "sqlite")


# -- dead letters ----------------------------------------------------------------------------


def test_dead_letter_headers_and_bodies_survive_what_the_event_holds() -> None:
    assert one_line("column a\x00b: \ud800\x07 end") == "column a\\x00b: \\ud800\\x07 end"
    assert event_body({"name": "\ud800", "ok": "é"}) == b'{"name":"\\ud800","ok":"\\u00e9"}'
    assert event_body({"name": "é"}) == '{"name":"é"}'.encode()
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert event_body(deep) is None
