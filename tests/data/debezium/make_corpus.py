"""Writes events.jsonl: Debezium PostgreSQL-connector messages as Kafka Connect's JsonConverter
(schemas enabled) sends them under Debezium's default settings — decimal.handling.mode=precise,
time.precision.mode=adaptive, binary.handling.mode=bytes — encoded here from the documented
rules, not by syncd's decoder:

- NUMERIC(p,s): org.apache.kafka.connect.data.Decimal, BYTES = base64 of the unscaled value's
  big-endian two's complement (Java's BigInteger.toByteArray), parameters.scale as text;
  NUMERIC without scale: io.debezium.data.VariableScaleDecimal, struct {scale INT32, value BYTES}
- DATE: io.debezium.time.Date, INT32 days since 1970-01-01
- TIME(6): io.debezium.time.MicroTime, INT64 microseconds past midnight
- TIMESTAMP(1-3): io.debezium.time.Timestamp, INT64 ms; TIMESTAMP(4-6): MicroTimestamp, INT64 µs
  (both since 1970-01-01 00:00, the wall time read as if UTC)
- TIMESTAMPTZ: io.debezium.time.ZonedTimestamp, STRING, ISO 8601 in GMT ("…Z")
- JSONB: io.debezium.data.Json, STRING (PostgreSQL's jsonb text); UUID: io.debezium.data.Uuid
- enum: io.debezium.data.Enum, STRING with parameters.allowed; BYTEA: BYTES (base64)
- an unchanged TOASTed value: unavailable.value.placeholder, "__debezium_unavailable_value",
  for a bytea column that text's bytes (so base64 in JSON)

Run it (python tests/data/debezium/make_corpus.py) after changing the rows below; the test
reads the files it writes, and expected.json is kept by hand.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).parent
PLACEHOLDER = "__debezium_unavailable_value"
EPOCH = datetime(1970, 1, 1)


def field(name: str, kind: str, logical: str | None = None, **extra: object) -> dict[str, object]:
    entry: dict[str, object] = {"type": kind, "optional": name != "id", "field": name}
    if logical:
        entry["name"] = logical
        entry["version"] = 1
    entry.update(extra)
    return entry


ROW_FIELDS = [
    field("id", "int32"),
    field(
        "price",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        parameters={"scale": "2", "connect.decimal.precision": "10"},
    ),
    field(
        "amount",
        "struct",
        "io.debezium.data.VariableScaleDecimal",
        fields=[
            {"type": "int32", "optional": False, "field": "scale"},
            {"type": "bytes", "optional": False, "field": "value"},
        ],
        doc="Variable scaled decimal",
    ),
    field("qty", "int16"),
    field("big", "int64"),
    field("ratio", "double"),  # JsonConverter's name for FLOAT64 (DOUBLE PRECISION)
    field("active", "boolean"),
    field("born", "int32", "io.debezium.time.Date"),
    field("at_local", "int64", "io.debezium.time.MicroTimestamp"),
    field("at_ms", "int64", "io.debezium.time.Timestamp"),
    field("at_zone", "string", "io.debezium.time.ZonedTimestamp"),
    field("t_of_day", "int64", "io.debezium.time.MicroTime"),
    field("doc", "string", "io.debezium.data.Json"),
    field("ref", "string", "io.debezium.data.Uuid"),
    field("body", "string"),
    field("raw_bytes", "bytes"),
    field("mood", "string", "io.debezium.data.Enum", parameters={"allowed": "happy,sad"}),
]


def envelope_schema() -> dict[str, object]:
    value = {
        "type": "struct",
        "fields": ROW_FIELDS,
        "optional": True,
        "name": "shop.public.items.Value",
    }
    source = {
        "type": "struct",
        "fields": [
            {"type": "string", "optional": False, "field": "version"},
            {"type": "string", "optional": False, "field": "connector"},
            {"type": "string", "optional": False, "field": "name"},
            {"type": "int64", "optional": False, "field": "ts_ms"},
            {
                "type": "string",
                "optional": True,
                "name": "io.debezium.data.Enum",
                "version": 1,
                "parameters": {"allowed": "true,last,false,incremental"},
                "default": "false",
                "field": "snapshot",
            },
            {"type": "string", "optional": False, "field": "db"},
            {"type": "string", "optional": True, "field": "sequence"},
            {"type": "string", "optional": False, "field": "schema"},
            {"type": "string", "optional": False, "field": "table"},
            {"type": "int64", "optional": True, "field": "txId"},
            {"type": "int64", "optional": True, "field": "lsn"},
            {"type": "int64", "optional": True, "field": "xmin"},
        ],
        "optional": False,
        "name": "io.debezium.connector.postgresql.Source",
        "field": "source",
    }
    transaction = {
        "type": "struct",
        "fields": [
            {"type": "string", "optional": False, "field": "id"},
            {"type": "int64", "optional": False, "field": "total_order"},
            {"type": "int64", "optional": False, "field": "data_collection_order"},
        ],
        "optional": True,
        "name": "event.block",
        "version": 1,
        "field": "transaction",
    }
    return {
        "type": "struct",
        "fields": [
            {**value, "field": "before"},
            {**value, "field": "after"},
            source,
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            transaction,
        ],
        "optional": False,
        "name": "shop.public.items.Envelope",
        "version": 1,
    }


def unscaled_bytes(unscaled: int) -> str:
    """Java's BigInteger.toByteArray: the shortest big-endian two's complement."""
    length = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def decimal(text: str) -> str:
    sign, digits, _ = Decimal(text).as_tuple()
    unscaled = int("".join(map(str, digits))) * (-1 if sign else 1)
    return unscaled_bytes(unscaled)


def variable(text: str) -> dict[str, object]:
    value = Decimal(text)
    scale = -int(value.as_tuple().exponent)
    return {"scale": scale, "value": decimal(text)}


def micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def row(values: dict[str, object]) -> dict[str, object]:
    """A source row (Python values) in its wire form."""
    out: dict[str, object] = {}
    for name, value in values.items():
        if value is None or value == PLACEHOLDER:
            out[name] = value
        elif name == "price":
            out[name] = decimal(str(value))
        elif name == "amount":
            out[name] = variable(str(value))
        elif name == "born":
            out[name] = (value - date(1970, 1, 1)).days  # type: ignore[operator]
        elif name == "at_local":
            out[name] = micros(value)  # type: ignore[arg-type]
        elif name == "at_ms":
            out[name] = micros(value) // 1000  # type: ignore[arg-type]
        elif name == "t_of_day":
            t: time = value  # type: ignore[assignment]
            out[name] = ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond
        elif name == "raw_bytes":
            out[name] = base64.b64encode(value).decode()  # type: ignore[arg-type]
        else:
            out[name] = value
    return out


def message(op: str, lsn: int, before: dict | None, after: dict | None, **extra: object) -> dict:
    source = {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "shop",
        "ts_ms": 1_705_314_600_000 + lsn,
        "snapshot": "true" if op == "r" else "false",
        "db": "shop",
        "sequence": json.dumps([str(lsn - 8), str(lsn)]),
        "schema": "public",
        "table": "items",
        "txId": 700 + lsn // 100,
        "lsn": lsn,
        "xmin": None,
    }
    payload = {
        "before": before and row(before),
        "after": after and row(after),
        "source": source,
        "op": op,
        "ts_ms": 1_705_314_600_500 + lsn,
        "transaction": None
        if op == "r"
        else {"id": f"{700 + lsn // 100}:{lsn}", "total_order": 1, "data_collection_order": 1},
        **extra,
    }
    return {"schema": envelope_schema(), "payload": payload}


FULL_1 = {
    "id": 1,
    "price": "30.50",
    "amount": "3.14159",
    "qty": 7,
    "big": 9007199254740993,
    "ratio": 0.1,
    "active": True,
    "born": date(2024, 1, 15),
    "at_local": datetime(2024, 1, 15, 10, 30, 0, 123456),
    "at_ms": datetime(2024, 1, 15, 10, 30, 0, 123000),
    "at_zone": "2024-01-15T10:30:00.123456Z",
    "t_of_day": time(10, 30, 0, 123456),
    "doc": '{"a": 1, "tags": ["x", "y"], "nested": {"k": null}}',
    "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "body": "a long text, TOASTed at the source",
    "raw_bytes": bytes([0, 255, 16, 128]),
    "mood": "happy",
}
FULL_2 = {
    "id": 2,
    "price": "-1234567.89",
    "amount": "0",
    "qty": -32768,
    "big": -9223372036854775808,
    "ratio": -2.5,
    "active": False,
    "born": date(1969, 12, 31),
    "at_local": datetime(1969, 12, 31, 23, 59, 59, 999999),
    "at_ms": datetime(1900, 1, 1),
    "at_zone": "1999-12-31T23:00:00Z",
    "t_of_day": time(0, 0),
    "doc": "[]",
    "ref": "00000000-0000-0000-0000-000000000000",
    "body": "short",
    "raw_bytes": b"",
    "mood": "sad",
}
NULLS_3 = {name: None for name in FULL_1} | {"id": 3}
KEY_ONLY = {name: None for name in FULL_1}
FULL_4 = {
    "id": 4,
    "price": "0.05",
    "amount": "-0.000001",
    "qty": 0,
    "big": 0,
    "ratio": 1e-300,
    "active": True,
    "born": date(2000, 2, 29),
    "at_local": datetime(2000, 2, 29, 12, 0, 0, 1),
    "at_ms": datetime(2000, 2, 29, 12, 0, 0, 1000),
    "at_zone": "2000-02-29T12:00:00.000001Z",
    "t_of_day": time(23, 59, 59, 999999),
    "doc": '{"n": -0.5, "s": "é ü 日本", "big": 12345678901234567890}',
    "ref": "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "body": "four",
    "raw_bytes": b"\x00\x00",
    "mood": "happy",
}
UPDATED_4 = FULL_4 | {
    "price": "99999999.99",
    "doc": '{"a": 2}',
    "body": PLACEHOLDER,
    "raw_bytes": PLACEHOLDER,
}


def events() -> list[object]:
    """Message bodies in order; a null payload is a tombstone."""
    b64_placeholder = base64.b64encode(PLACEHOLDER.encode()).decode()
    update_1 = message(
        "u", 2100, None, FULL_1 | {"price": "31.00", "body": PLACEHOLDER, "raw_bytes": PLACEHOLDER}
    )
    update_1["payload"]["after"]["raw_bytes"] = b64_placeholder  # a bytea column's placeholder
    update_4 = message("u", 2400, None, UPDATED_4)
    update_4["payload"]["after"]["raw_bytes"] = b64_placeholder
    transaction_schema = {
        "type": "struct",
        "name": "io.debezium.connector.common.TransactionMetadataValue",
        "version": 1,
        "optional": False,
        "fields": [
            {"type": "string", "optional": False, "field": "status"},
            {"type": "string", "optional": False, "field": "id"},
            {"type": "int64", "optional": True, "field": "event_count"},
            {
                "type": "array",
                "optional": True,
                "field": "data_collections",
                "items": {
                    "type": "struct",
                    "optional": False,
                    "fields": [
                        {"type": "string", "optional": False, "field": "data_collection"},
                        {"type": "int64", "optional": False, "field": "event_count"},
                    ],
                },
            },
            {"type": "int64", "optional": False, "field": "ts_ms"},
        ],
    }
    heartbeat_schema = {
        "type": "struct",
        "name": "io.debezium.connector.common.Heartbeat",
        "version": 1,
        "optional": False,
        "fields": [{"type": "int64", "optional": False, "field": "ts_ms"}],
    }
    return [
        message("r", 1000, None, FULL_1),
        message("r", 1000, None, FULL_2),
        message("r", 1000, None, NULLS_3),
        {
            "schema": transaction_schema,
            "payload": {
                "status": "BEGIN",
                "id": "721:2000",
                "event_count": None,
                "data_collections": None,
                "ts_ms": 1_705_314_602_000,
            },
        },
        message("c", 2000, None, FULL_4),
        update_1,
        message(
            "u", 2150, None, FULL_2 | {"doc": '{"b": [true, false, null]}', "body": PLACEHOLDER}
        ),
        message("d", 2200, KEY_ONLY | {"id": 3}, None),
        {"schema": None, "payload": None},  # a tombstone in its envelope
        {
            "schema": transaction_schema,
            "payload": {
                "status": "END",
                "id": "721:2000",
                "event_count": 4,
                "data_collections": [{"data_collection": "public.items", "event_count": 4}],
                "ts_ms": 1_705_314_602_100,
            },
        },
        {"schema": heartbeat_schema, "payload": {"ts_ms": 1_705_314_603_000}},
        update_4,
        message("r", 1000, None, FULL_4),  # a late snapshot read: older than what row 4 holds
    ]


if __name__ == "__main__":
    with (HERE / "events.jsonl").open("w") as out:
        for body in events():
            # Compact, as JsonConverter writes it
            out.write(json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n")
