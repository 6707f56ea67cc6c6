import json

import pytest

from syncd.errors import DecodeError
from syncd.events import BadEvent, ChangeEvent, decode_body, decode_event

SOURCE = {"name": "crm", "schema": "public", "table": "customers", "seq": 1042, "ts_ms": 1764}


def event(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "op": "u",
        "before": {"id": 7, "email": "OLD@x.org"},
        "after": {"id": 7, "email": "New@x.org", "name": "Ana"},
        "source": dict(SOURCE),
        "ts_ms": 1764000000123,
    }
    document.update(overrides)
    return document


def test_design_example_decodes_with_position_and_default_id() -> None:
    [decoded] = decode_body(json.dumps(event()).encode())
    assert isinstance(decoded, ChangeEvent)
    assert (decoded.op, decoded.system, decoded.schema, decoded.table) == (
        "u",
        "crm",
        "public",
        "customers",
    )
    assert decoded.position == 1042
    assert decoded.event_id == "crm@1042"
    assert decoded.source_ts_ms == 1764
    assert decoded.after == {"id": 7, "email": "New@x.org", "name": "Ana"}


def test_debezium_wrapper_and_lsn_position_are_accepted() -> None:
    source = {"name": "crm", "schema": "public", "table": "customers", "lsn": 99}
    body = {"schema": {"type": "struct"}, "payload": event(source=source)}
    [decoded] = decode_body(json.dumps(body))
    assert isinstance(decoded, ChangeEvent)
    assert decoded.position == 99


def test_array_decodes_each_element_on_its_own() -> None:
    body = json.dumps([event(), {"op": "x"}, event(op="d", after=None)])
    first, bad, delete = decode_body(body)
    assert isinstance(first, ChangeEvent)
    assert isinstance(bad, BadEvent)
    assert "'op' must be one of c, u, d, r" in str(bad.error)
    assert bad.raw == {"op": "x"}
    assert isinstance(delete, ChangeEvent) and delete.is_delete


def test_explicit_id_field_or_header_names_the_event() -> None:
    assert decode_event(event(id="evt-1")).event_id == "evt-1"
    [decoded] = decode_body(json.dumps(event()), event_id="from-header")
    assert isinstance(decoded, ChangeEvent) and decoded.event_id == "from-header"


def test_mysql_style_db_stands_for_schema() -> None:
    source = {"name": "shop", "db": "inventory", "table": "items", "seq": 1}
    assert decode_event(event(source=source)).qualified_table == "inventory.items"


def test_body_that_is_not_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode_body(b"\xff\xfe not json")


def test_empty_array_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="empty JSON array"):
        decode_body(b"[]")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("just text", "must be a JSON object, found the text"),
        (event(op="z"), "'op' must be one of c, u, d, r, t; found 'z'"),
        (event(op="d", before=None, after=None), "a delete ('op': 'd') needs 'before'"),
        (event(op="c", after=None), "'op': 'c' needs 'after'"),
        (event(after=[1, 2]), "'after' must be an object or null, found an array"),
        (event(source=None), "'source' must be an object, found null"),
        (event(source={**SOURCE, "name": ""}), "'source.name' must be non-empty text"),
        (event(source={**SOURCE, "table": 5}), "'source.table' must be non-empty text"),
        (event(source={**SOURCE, "seq": -1}), "'source.seq' must be a whole number"),
        (event(source={**SOURCE, "seq": True}), "'source.seq' must be a whole number"),
        (event(source={**SOURCE, "seq": 2**63}), "'source.seq' must be a whole number"),
        (event(source={k: v for k, v in SOURCE.items() if k != "seq"}), "'source.seq' (or"),
        (event(id=[1]), "'id' must be text or a number"),
    ],
)
def test_bad_event_is_a_decode_error_saying_what_is_wrong(document: object, message: str) -> None:
    with pytest.raises(DecodeError) as error:
        decode_event(document)
    assert message in str(error.value)


def test_digit_string_position_is_accepted() -> None:
    assert decode_event(event(source={**SOURCE, "seq": "17"})).position == 17


def test_json_nested_too_deeply_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_body(b"[" * 100_000 + b"]" * 100_000)


def test_truncate_needs_neither_before_nor_after() -> None:
    decoded = decode_event(event(op="t", before=None, after=None))
    assert (decoded.op, decoded.before, decoded.after, decoded.position) == ("t", None, None, 1042)


def test_unavailable_columns_are_read_and_checked() -> None:
    assert decode_event(event(unavailable=["body"])).unavailable == ("body",)
    assert decode_event(event()).unavailable == ()
    with pytest.raises(DecodeError, match="'unavailable' must be a list of column names"):
        decode_event(event(unavailable="body"))
