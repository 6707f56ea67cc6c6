"""Debezium's JSON decoded by its schema (syncd.debezium through syncd.events), over the corpus
in tests/data/debezium/ and over hand-made edge and hostile cases."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncd import debezium, jsonvalue
from syncd.debezium import schemas
from syncd.errors import DecodeError
from syncd.events import BadEvent, ChangeEvent, Skipped, decode_body, decode_event

CORPUS = Path(__file__).parent.parent / "data" / "debezium"
PLACEHOLDER_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
SOURCE = {"connector": "postgresql", "name": "shop", "schema": "public", "table": "t", "lsn": 5}


def corpus() -> list[bytes]:
    return (CORPUS / "events.jsonl").read_bytes().splitlines()


def expected_rows() -> dict[int, dict[str, Any]]:
    return {
        int(k): v for k, v in json.loads((CORPUS / "expected.json").read_text())["rows"].items()
    }


def shown(value: Any) -> Any:
    """A decoded value as expected.json spells it."""
    if isinstance(value, bytes):
        return "hex:" + value.hex()
    if isinstance(value, dict | list):
        return jsonvalue.dumps_spaced(value)
    if isinstance(value, Decimal):  # a double read exactly, as JSON sent it: expected.json's float
        return float(value)
    return value


def replay(bodies: list[bytes]) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """What a target holds after the bodies, by the position guard's rules; and the skips."""
    rows: dict[int, dict[str, Any]] = {}
    positions: dict[int, int] = {}
    skipped: list[str] = []
    for body in bodies:
        for slot in decode_body(body):
            if isinstance(slot, Skipped):
                skipped.append(slot.reason)
                continue
            assert isinstance(slot, ChangeEvent), slot
            row = slot.before if slot.is_delete else slot.after
            assert row is not None
            key = row["id"]
            if positions.get(key, -1) >= slot.position:
                continue  # stale
            positions[key] = slot.position
            if slot.is_delete:
                rows.pop(key, None)
            else:
                assert not set(slot.unavailable) & set(row), "a placeholder column was kept"
                rows[key] = {**rows.get(key, {}), **row}
    return rows, skipped


def test_corpus_decodes_to_the_exact_target_values() -> None:
    rows, skipped = replay(corpus())
    assert {k: {c: shown(v) for c, v in row.items()} for k, row in rows.items()} == expected_rows()
    assert sorted(skipped) == ["heartbeat", "tombstone", "transaction", "transaction"]


def test_corpus_update_names_placeholder_columns_unavailable() -> None:
    update = next(
        s
        for body in corpus()
        for s in decode_body(body)
        if isinstance(s, ChangeEvent) and s.position == 2100
    )
    assert update.unavailable == ("body", "raw_bytes")
    assert "body" not in (update.after or {}) and "raw_bytes" not in (update.after or {})


# -- value encodings, each from Debezium's and Kafka Connect's documentation ----------------------


def wrapped(fields: list[dict[str, Any]], after: dict[str, Any], op: str = "u") -> dict[str, Any]:
    row_schema = {
        "type": "struct",
        "optional": True,
        "fields": [{"type": "int32", "field": "id"}, *fields],
    }
    schema = {
        "type": "struct",
        "name": "shop.public.t.Envelope",
        "fields": [{**row_schema, "field": "before"}, {**row_schema, "field": "after"}],
    }
    payload = {"op": op, "before": None, "after": {"id": 1, **after}, "source": SOURCE}
    return {"schema": schema, "payload": payload}


def decoded(kind: str, value: Any, name: str | None = None, **extra: Any) -> Any:
    field = {"type": kind, "optional": True, "field": "v", **extra}
    if name:
        field["name"] = name
    event = decode_event(wrapped([field], {"v": value}))
    assert event.after is not None
    return event.after["v"]


DECIMAL = "org.apache.kafka.connect.data.Decimal"


def decimal_bytes(unscaled: int) -> str:
    length = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


@pytest.mark.parametrize(
    ("wire", "scale", "text"),
    [
        ("C+o=", "2", "30.50"),  # the example: 3050 with scale 2
        (decimal_bytes(-5), "2", "-0.05"),
        (decimal_bytes(0), "3", "0.000"),
        (decimal_bytes(-128), "0", "-128"),  # one byte, 0x80
        (decimal_bytes(128), "0", "128"),  # two bytes, 0x0080
        (decimal_bytes(7), "-3", "7000"),  # a negative scale multiplies
        (decimal_bytes(10**40 + 1), "38", "100.00000000000000000000000000000000000001"),
    ],
)
def test_kafka_connect_decimal_is_exact_text_with_its_scale(
    wire: str, scale: str, text: str
) -> None:
    value = decoded("bytes", wire, DECIMAL, parameters={"scale": scale})
    assert value == text


def test_decimal_written_as_a_number_gets_its_scale() -> None:
    # JsonConverter's decimal.format=NUMERIC writes the number itself.
    assert decoded("bytes", 30.5, DECIMAL, parameters={"scale": "2"}) == "30.50"
    assert decoded("bytes", -7, DECIMAL, parameters={"scale": "3"}) == "-7.000"


def test_variable_scale_decimal_takes_each_value_scale() -> None:
    name = "io.debezium.data.VariableScaleDecimal"
    struct = {"fields": [{"type": "int32", "field": "scale"}, {"type": "bytes", "field": "value"}]}
    value = {"scale": 5, "value": decimal_bytes(314159)}
    assert decoded("struct", value, name, **struct) == "3.14159"


@pytest.mark.parametrize(
    ("name", "kind", "wire", "text"),
    [
        ("io.debezium.time.Date", "int32", 19737, "2024-01-15"),
        ("io.debezium.time.Date", "int32", -719162, "0001-01-01"),
        ("org.apache.kafka.connect.data.Date", "int32", 0, "1970-01-01"),
        ("io.debezium.time.Time", "int32", 37800123, "10:30:00.123000"),
        ("org.apache.kafka.connect.data.Time", "int32", 0, "00:00:00"),
        ("io.debezium.time.MicroTime", "int64", 86_400_000_000, "24:00:00"),  # PostgreSQL's 24:00
        ("io.debezium.time.MicroTime", "int64", -1_000_000, "-00:00:01"),  # a MySQL duration
        ("io.debezium.time.NanoTime", "int64", 1_000_000_001, "00:00:01.000000001"),
        ("io.debezium.time.NanoTime", "int64", 1_000_001_000, "00:00:01.000001"),
        ("io.debezium.time.Timestamp", "int64", 1705314600123, "2024-01-15 10:30:00.123000"),
        ("org.apache.kafka.connect.data.Timestamp", "int64", -1, "1969-12-31 23:59:59.999000"),
        (
            "io.debezium.time.MicroTimestamp",
            "int64",
            1705314600123456,
            "2024-01-15 10:30:00.123456",
        ),
        ("io.debezium.time.MicroTimestamp", "int64", -1, "1969-12-31 23:59:59.999999"),
        (
            "io.debezium.time.NanoTimestamp",
            "int64",
            1705314600123456789,
            "2024-01-15 10:30:00.123456789",
        ),
        (
            "io.debezium.data.Uuid",
            "string",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
        ("io.debezium.data.Xml", "string", "<a>1</a>", "<a>1</a>"),
        ("io.debezium.data.EnumSet", "string", "a,b", "a,b"),
    ],
)
def test_logical_type_is_decoded_to_iso_text(name: str, kind: str, wire: Any, text: str) -> None:
    assert decoded(kind, wire, name) == text


def test_zoned_timestamp_keeps_its_text_and_knows_its_utc_wall_time() -> None:
    value = decoded("string", "2024-01-15T12:30:00.5+02:00", "io.debezium.time.ZonedTimestamp")
    assert isinstance(value, debezium.ZonedText)
    assert value == "2024-01-15T12:30:00.5+02:00"
    assert value.utc == "2024-01-15 10:30:00.500000"
    zoned_time = decoded("string", "00:15:30Z", "io.debezium.time.ZonedTime")
    assert (zoned_time, zoned_time.utc) == ("00:15:30Z", "00:15:30")


def test_json_is_the_document_and_bytes_are_bytes() -> None:
    assert decoded("string", '{"a": [1, "é"]}', "io.debezium.data.Json") == {"a": [1, "é"]}
    assert decoded("bytes", "AP8QgA==") == bytes([0, 255, 16, 128])
    # Inside an array a JSON document cannot hold bytes: they stay base64 text.
    assert decoded("array", ["AP8="], items={"type": "bytes"}) == ["AP8="]
    assert decoded(
        "array",
        [decimal_bytes(5)],
        items={"type": "bytes", "name": DECIMAL, "parameters": {"scale": "1"}},
    ) == ["0.5"]


def test_primitives_pass_as_sent() -> None:
    assert decoded("int64", 9223372036854775807) == 9223372036854775807
    assert decoded("boolean", False) is False
    assert decoded("double", 1e-300) == 1e-300  # JsonConverter's FLOAT64
    assert decoded("float", 0.5) == 0.5  # and FLOAT32
    assert decoded("string", "") == ""


# -- the unavailable placeholder ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "wire"),
    [
        ({"type": "string"}, "__debezium_unavailable_value"),
        ({"type": "string", "name": "io.debezium.data.Json"}, "__debezium_unavailable_value"),
        ({"type": "bytes"}, PLACEHOLDER_B64),
        ({"type": "array", "items": {"type": "string"}}, ["__debezium_unavailable_value"]),
        ({"type": "array", "items": {"type": "bytes"}}, [PLACEHOLDER_B64]),
        ({"type": "array", "items": {"type": "int32"}}, list(b"__debezium_unavailable_value")),
        (
            {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}},
            {"__debezium_unavailable_value": "__debezium_unavailable_value"},
        ),
    ],
)
def test_placeholder_in_every_form_leaves_the_column_unavailable(
    field: dict[str, Any], wire: Any
) -> None:
    event = decode_event(wrapped([{**field, "field": "v"}], {"v": wire, "w": 1}))
    assert event.after == {"id": 1, "w": 1}
    assert event.unavailable == ("v",)


def test_placeholder_of_uuid_array_is_javas_name_uuid() -> None:
    # What Java 17's UUID.nameUUIDFromBytes("__debezium_unavailable_value".getBytes()) prints
    # (jshell), the element Debezium sends for an unchanged TOASTed uuid[] column.
    field = {"type": "array", "items": {"type": "string"}, "field": "v"}
    event = decode_event(wrapped([field], {"v": ["b68a35a7-17ad-35b3-af2a-ae46edb4545a"]}))
    assert event.unavailable == ("v",)


def test_placeholder_without_schema_is_found_by_its_forms() -> None:
    event = decode_event(
        {
            "op": "u",
            "after": {
                "id": 1,
                "body": "__debezium_unavailable_value",
                "raw_bytes": PLACEHOLDER_B64,
                "n": "C+o=",
            },
            "before": {"id": 1, "body": "__debezium_unavailable_value"},
            "source": SOURCE,
        }
    )
    assert event.after == {"id": 1, "n": "C+o="}  # without a schema, values pass as sent
    assert event.before == {"id": 1}
    assert event.unavailable == ("body", "raw_bytes")


def test_configured_placeholder_replaces_the_default() -> None:
    body = json.dumps(wrapped([{"type": "string", "field": "v"}], {"v": "??"}))
    [event] = decode_body(body, placeholder="??")
    assert isinstance(event, ChangeEvent) and event.unavailable == ("v",)
    [event] = decode_body(body)
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "v": "??"}


def test_placeholder_joins_an_unavailable_list_already_given() -> None:
    document = wrapped([{"type": "string", "field": "v"}], {"v": debezium.PLACEHOLDER})
    document["payload"]["unavailable"] = ["other"]
    assert decode_event(document).unavailable == ("other", "v")


# -- messages that change no row ------------------------------------------------------------------

HEARTBEAT_FIELD = {"type": "int64", "field": "ts_ms"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"schema": null, "payload": null}', "tombstone"),
        (b'{"ts_ms": 1705314603000}', "heartbeat"),
        (
            {"schema": {"type": "struct", "fields": [HEARTBEAT_FIELD]}, "payload": {"ts_ms": 1}},
            "heartbeat",
        ),
        ({"status": "BEGIN", "id": "571:53195829", "event_count": None, "ts_ms": 1}, "transaction"),
        (
            {
                "status": "END",
                "id": "571:53195829",
                "event_count": 2,
                "data_collections": [{"data_collection": "s1.a", "event_count": 1}],
            },
            "transaction",
        ),
        (
            {"op": "m", "ts_ms": 1, "source": {}, "message": {"prefix": "p", "content": "YQ=="}},
            "message",
        ),
    ],
)
def test_debezium_message_that_changes_no_row_is_skipped(body: Any, reason: str) -> None:
    [slot] = decode_body(body if isinstance(body, bytes) else json.dumps(body))
    assert isinstance(slot, Skipped) and slot.reason == reason


def test_a_body_with_no_event_at_all_is_dead_lettered_not_skipped() -> None:
    # An empty or bare null body (how a bridge may render a Kafka tombstone) holds nothing to
    # tell a tombstone from a broken producer: dead-lettered with its reason, never dropped.
    for body in (b"", b"  \n"):
        with pytest.raises(DecodeError, match="message body is empty"):
            decode_body(body)
    [slot] = decode_body(b"null")
    assert isinstance(slot, BadEvent)
    event = {"op": "c", "after": {"id": 1}, "source": {"name": "s", "table": "t", "seq": 1}}
    first, second = decode_body(json.dumps([event, None]))
    assert isinstance(first, ChangeEvent) and isinstance(second, BadEvent)


def test_object_that_only_looks_like_metadata_is_still_bad() -> None:
    [slot] = decode_body(b'{"status": "BEGIN"}')
    assert isinstance(slot, BadEvent)


def test_mysql_connector_position_is_said_unsupported() -> None:
    source = {
        "connector": "mysql",
        "name": "s",
        "db": "d",
        "table": "t",
        "file": "mysql-bin.000003",
        "pos": 154,
        "row": 0,
    }
    [slot] = decode_body(json.dumps({"op": "c", "after": {"id": 1}, "source": source}))
    assert isinstance(slot, BadEvent)
    assert "MySQL-connector position" in str(slot.error) and "not supported" in str(slot.error)


# -- hostile schemas and values: a DecodeError naming the field, never a crash --------------------


@pytest.mark.parametrize(
    ("field", "wire", "said"),
    [
        (
            {"type": "bytes", "name": DECIMAL, "parameters": {"scale": "2"}},
            "not base64!",
            "'after.v'",
        ),
        ({"type": "bytes", "name": DECIMAL, "parameters": {"scale": "2"}}, "", "empty bytes"),
        ({"type": "bytes", "name": DECIMAL, "parameters": {"scale": "2"}}, True, "base64"),
        (
            {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "fields": []},
            {"scale": 10**9, "value": "AQ=="},
            "scale",
        ),
        (
            {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "fields": []},
            {"value": "AQ=="},
            "scale and value",
        ),
        (
            {"type": "bytes", "name": DECIMAL, "parameters": {"scale": "0"}},
            base64.b64encode(b"\x7f" * 3000).decode(),
            "'after.v'",
        ),
        ({"type": "int32", "name": "io.debezium.time.Date"}, "2024-01-15", "whole number"),
        ({"type": "int32", "name": "io.debezium.time.Date"}, 10**12, "out of range"),
        ({"type": "int64", "name": "io.debezium.time.MicroTimestamp"}, 2**62, "years 1 to 9999"),
        ({"type": "int64", "name": "io.debezium.time.MicroTimestamp"}, True, "whole number"),
        ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, "yesterday", "ISO 8601"),
        (
            {"type": "string", "name": "io.debezium.time.ZonedTimestamp"},
            "2024-01-15T10:30:00",
            "no zone",
        ),
        ({"type": "string", "name": "io.debezium.data.Json"}, "{not json", "JSON document"),
        ({"type": "int32"}, "7", "expected int"),
        ({"type": "boolean"}, 1, "expected bool"),
        ({"type": "bytes"}, "QQ", "not base64"),
        ({"type": "array", "items": {"type": "int32"}}, "x", "an array"),
    ],
)
def test_value_that_does_not_fit_its_schema_is_a_decode_error_naming_it(
    field: dict[str, Any], wire: Any, said: str
) -> None:
    [slot] = decode_body(json.dumps(wrapped([{**field, "field": "v"}], {"v": wire})))
    assert isinstance(slot, BadEvent)
    assert said in str(slot.error)
    assert "'after.v'" in str(slot.error) or "v" in str(slot.error)


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ("a text", "'schema' must be an object"),
        ({"type": "struct", "fields": None}, "list of 'fields'"),
        ({"type": "struct", "fields": [{"type": "int32"}]}, "needs a name"),
        ({"type": "struct", "fields": ["x"]}, "needs a name"),
        (
            {"type": "struct", "fields": [{"field": "after", "type": "string"}]},
            "'after' must be a struct",
        ),
        (
            {
                "type": "struct",
                "fields": [
                    {
                        "field": "after",
                        "type": "struct",
                        "fields": [{"field": "v", "type": "decimal"}],
                    }
                ],
            },
            "unknown type 'decimal'",
        ),
        (
            {
                "type": "struct",
                "fields": [
                    {
                        "field": "after",
                        "type": "struct",
                        "fields": [{"field": "v", "type": "bytes", "name": DECIMAL}],
                    }
                ],
            },
            "parameters.scale",
        ),
        (
            {
                "type": "struct",
                "fields": [
                    {
                        "field": "after",
                        "type": "struct",
                        "fields": [
                            {
                                "field": "v",
                                "type": "bytes",
                                "name": DECIMAL,
                                "parameters": {"scale": "2e9"},
                            }
                        ],
                    }
                ],
            },
            "parameters.scale",
        ),
        (
            {
                "type": "struct",
                "fields": [
                    {
                        "field": "after",
                        "type": "struct",
                        "fields": [{"field": "v", "type": "array"}],
                    }
                ],
            },
            "needs 'items'",
        ),
    ],
)
def test_malformed_schema_is_a_decode_error(schema: Any, said: str) -> None:
    body = {"schema": schema, "payload": {"op": "c", "after": {"v": 1}, "source": SOURCE}}
    [slot] = decode_body(json.dumps(body))
    assert isinstance(slot, BadEvent)
    assert said in str(slot.error)


def test_schema_without_fields_leaves_values_as_sent() -> None:
    # A hand-written wrapper ({"schema": {"type": "struct"}, …}) describes no values.
    payload = {
        "op": "u",
        "after": {"id": 1, "n": "C+o=", "b": debezium.PLACEHOLDER},
        "source": SOURCE,
    }
    event = decode_event({"schema": {"type": "struct"}, "payload": payload})
    assert event.after == {"id": 1, "n": "C+o="}
    assert event.unavailable == ("b",)


def test_deeply_nested_schema_is_a_decode_error() -> None:
    # As deep as the JSON parser allows under pytest: compiled and decoded without a crash.
    depth = 450
    inner = (
        '{"type": "struct", "field": "v", "fields": [' * depth + '{"type": "int32", "field": "v"}'
    )
    inner += "]}" * depth
    schema = (
        '{"type": "struct", "fields": [{"type": "struct", "field": "after", "fields": [' + inner
    )
    payload = json.dumps({"op": "c", "after": {"v": 1}, "source": SOURCE})
    [slot] = decode_body('{"schema": ' + schema + ']}]}, "payload": ' + payload + "}")
    # Refused (here: the value is no struct at that depth), and never a RecursionError.
    assert isinstance(slot, BadEvent)


# -- the cache ------------------------------------------------------------------------------------


def test_schema_is_compiled_once_and_again_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    schemas.CACHE.clear()
    compiled: list[Any] = []
    original = schemas.compile_envelope

    def counting(schema: Any, placeholder: str) -> Any:
        compiled.append(schema)
        return original(schema, placeholder)

    monkeypatch.setattr(schemas, "compile_envelope", counting)
    body = json.dumps(wrapped([{"type": "string", "field": "v"}], {"v": "x"}))
    for _ in range(3):
        decode_body(body)
    assert len(compiled) == 1
    changed = json.dumps(wrapped([{"type": "int32", "field": "v"}], {"v": 2}))
    [event] = decode_body(changed)
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "v": 2}
    assert len(compiled) == 2
    decode_body(body)  # the older version is still cached
    assert len(compiled) == 2


def test_cache_stays_bounded_under_a_stream_of_new_schemas() -> None:
    schemas.CACHE.clear()
    for n in range(schemas._Cache.NAMES + 50):
        document = wrapped([{"type": "string", "field": "v"}], {"v": "x"})
        document["schema"]["name"] = f"s{n}"
        decode_event(document)
    assert len(schemas.CACHE._by_name) == schemas._Cache.NAMES


def compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))  # as JsonConverter writes it


def test_known_schema_text_is_not_parsed_again_and_payloads_still_are() -> None:
    schemas.CACHE.clear()
    first = wrapped([{"type": "string", "field": "v"}], {"v": "one"})
    second = wrapped([{"type": "string", "field": "v"}], {"v": "two"})
    [a] = decode_body(compact(first))
    assert debezium.parse_known(compact(second)) is not None  # the schema's text is known now
    [b] = decode_body(compact(second))
    assert isinstance(a, ChangeEvent) and isinstance(b, ChangeEvent)
    assert (a.after, b.after) == ({"id": 1, "v": "one"}, {"id": 1, "v": "two"})


def test_schema_holding_the_payload_key_is_parsed_in_full_every_time() -> None:
    schemas.CACHE.clear()
    field = {"type": "string", "field": "v", "parameters": {"a": "1", "payload": "x"}}
    body = compact(wrapped([field], {"v": "one"}))
    for _ in range(2):
        [event] = decode_body(body)
        assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "v": "one"}
    assert debezium.parse_known(body) is None


def test_known_schema_followed_by_garbage_is_still_not_json() -> None:
    schemas.CACHE.clear()
    body = compact(wrapped([{"type": "string", "field": "v"}], {"v": "one"}))
    decode_body(body)
    with pytest.raises(DecodeError, match="not JSON"):
        decode_body(body[:-1] + "}}")
    with pytest.raises(DecodeError, match="not JSON"):
        decode_body(body.replace('"payload":{', '"payload":{{'))
