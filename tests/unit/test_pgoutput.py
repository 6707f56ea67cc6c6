"""The pgoutput decoder, on messages built byte by byte as protocol version 1 lays them out."""

from __future__ import annotations

import struct

import pytest

from syncd.capture.logical import group_columns
from syncd.capture.pgoutput import (
    BOOL_OID,
    FLOAT4_OID,
    FLOAT8_OID,
    INT2_OID,
    INT4_OID,
    INT8_OID,
    JSON_OID,
    JSONB_OID,
    OID_OID,
    PG_EPOCH_UNIX_MS,
    UNCHANGED_TOAST,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    MalformedMessage,
    Origin,
    Relation,
    RelationCache,
    Truncate,
    TypeInfo,
    Update,
    convert,
    decode,
)
from syncd.errors import CaptureError

TEXT_OID = 25
NUMERIC_OID = 1700
# 2024-01-02 03:04:05.678901 UTC, in microseconds since 2000-01-01.
COMMIT_TIME_US = 757_479_845_678_901
COMMIT_TIME_MS = PG_EPOCH_UNIX_MS + 757_479_845_678


def cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def text(value: str) -> bytes:
    data = value.encode()
    return b"t" + struct.pack(">i", len(data)) + data


NULL = b"n"
UNCHANGED = b"u"


def tuple_data(*values: bytes) -> bytes:
    return struct.pack(">h", len(values)) + b"".join(values)


def column(name: str, type_oid: int, key: bool = False, typmod: int = -1) -> bytes:
    return struct.pack(">B", 1 if key else 0) + cstring(name) + struct.pack(">Ii", type_oid, typmod)


def relation_message(oid: int, namespace: str, name: str, *columns: bytes) -> bytes:
    head = b"R" + struct.pack(">I", oid) + cstring(namespace) + cstring(name)
    return head + b"d" + struct.pack(">h", len(columns)) + b"".join(columns)


ORDERS = Relation(
    oid=16400,
    namespace="public",
    name="orders",
    replica_identity="d",
    columns=(
        Column("id", INT4_OID, -1, True),
        Column("note", TEXT_OID, -1, False),
        Column("body", TEXT_OID, -1, False),
    ),
)


def test_begin_carries_final_lsn_commit_time_in_unix_ms_and_xid() -> None:
    payload = b"B" + struct.pack(">QqI", 0x1_0000_0028, COMMIT_TIME_US, 771)
    assert decode(payload) == Begin(final_lsn=0x1_0000_0028, commit_time_ms=COMMIT_TIME_MS, xid=771)


def test_commit_carries_commit_and_end_lsn() -> None:
    payload = b"C" + struct.pack(">BQQq", 0, 0x16B3748, 0x16B3778, COMMIT_TIME_US)
    assert decode(payload) == Commit(0, 0x16B3748, 0x16B3778, COMMIT_TIME_MS)


def test_relation_lists_columns_with_key_flags_types_and_typmods() -> None:
    payload = relation_message(
        16400,
        "public",
        "orders",
        column("id", INT4_OID, key=True),
        column("note", TEXT_OID),
        column("total", NUMERIC_OID, typmod=655366),
    )
    relation = decode(payload)
    assert isinstance(relation, Relation)
    assert (relation.oid, relation.namespace, relation.name) == (16400, "public", "orders")
    assert relation.replica_identity == "d"
    assert relation.columns == (
        Column("id", INT4_OID, -1, True),
        Column("note", TEXT_OID, -1, False),
        Column("total", NUMERIC_OID, 655366, False),
    )
    assert relation.key_columns == ("id",)


def test_relation_in_pg_catalog_arrives_with_an_empty_namespace() -> None:
    relation = decode(relation_message(1, "", "pg_thing", column("a", TEXT_OID)))
    assert isinstance(relation, Relation)
    assert relation.namespace == "pg_catalog"


def test_type_and_origin_messages_decode() -> None:
    assert decode(b"Y" + struct.pack(">I", 16500) + cstring("public") + cstring("mood")) == (
        TypeInfo(16500, "public", "mood")
    )
    assert decode(b"O" + struct.pack(">Q", 0x42) + cstring("upstream")) == Origin(0x42, "upstream")


def test_insert_tuple_holds_text_null_and_unchanged_values() -> None:
    payload = b"I" + struct.pack(">I", 16400) + b"N" + tuple_data(text("7"), NULL, UNCHANGED)
    assert decode(payload) == Insert(16400, ("7", None, UNCHANGED_TOAST))


def test_update_without_old_tuple() -> None:
    payload = b"U" + struct.pack(">I", 16400) + b"N" + tuple_data(text("7"), text("x"), UNCHANGED)
    assert decode(payload) == Update(16400, None, None, ("7", "x", UNCHANGED_TOAST))


def test_update_with_old_key_then_new_tuple() -> None:
    old = tuple_data(text("7"), NULL, NULL)
    new = tuple_data(text("8"), text("x"), UNCHANGED)
    payload = b"U" + struct.pack(">I", 16400) + b"K" + old + b"N" + new
    assert decode(payload) == Update(16400, "K", ("7", None, None), ("8", "x", UNCHANGED_TOAST))


def test_update_with_old_full_row() -> None:
    old = tuple_data(text("7"), text("before"), text("b"))
    new = tuple_data(text("7"), text("after"), text("b"))
    payload = b"U" + struct.pack(">I", 16400) + b"O" + old + b"N" + new
    change = decode(payload)
    assert change == Update(16400, "O", ("7", "before", "b"), ("7", "after", "b"))


def test_delete_with_old_key_and_with_old_row() -> None:
    key = b"D" + struct.pack(">I", 16400) + b"K" + tuple_data(text("7"), NULL, NULL)
    full = b"D" + struct.pack(">I", 16400) + b"O" + tuple_data(text("7"), text("n"), NULL)
    assert decode(key) == Delete(16400, "K", ("7", None, None))
    assert decode(full) == Delete(16400, "O", ("7", "n", None))


def test_truncate_lists_relations_and_option_bits() -> None:
    payload = b"T" + struct.pack(">iB", 2, 3) + struct.pack(">II", 16400, 16410)
    assert decode(payload) == Truncate(options=3, relation_oids=(16400, 16410))


def test_logical_message_is_decoded_for_skipping() -> None:
    payload = b"M" + struct.pack(">BQ", 1, 0x99) + cstring("app") + struct.pack(">i", 3) + b"abc"
    assert decode(payload) == LogicalMessage(1, 0x99, "app", b"abc")


def test_text_values_are_utf8() -> None:
    payload = b"I" + struct.pack(">I", 1) + b"N" + tuple_data(text("Zoë ✓"))
    assert decode(payload) == Insert(1, ("Zoë ✓",))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"Z",
        b"B" + struct.pack(">Q", 1),  # cut short
        b"I" + struct.pack(">I", 1) + b"X" + tuple_data(),  # not an 'N' tuple
        b"I" + struct.pack(">I", 1) + b"N" + tuple_data(b"b"),  # binary values are protocol 2
        b"D" + struct.pack(">I", 1) + b"N" + tuple_data(),
        b"R" + struct.pack(">I", 1) + b"public",  # unterminated string
    ],
)
def test_malformed_messages_raise_a_capture_error(payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode(payload)
    assert issubclass(MalformedMessage, CaptureError)


def test_row_converts_by_type_and_leaves_unchanged_toast_out() -> None:
    assert ORDERS.row(("7", None, UNCHANGED_TOAST)) == {"id": 7, "note": None}


def test_row_of_old_key_tuple_keeps_only_key_columns() -> None:
    assert ORDERS.row(("7", None, None), key_only=True) == {"id": 7}


def test_row_with_wrong_column_count_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match=r"public\.orders"):
        ORDERS.row(("7",))


def test_relation_cache_returns_the_latest_relation_and_refuses_unknown_oids() -> None:
    cache = RelationCache()
    cache.add(ORDERS)
    renamed = Relation(ORDERS.oid, "public", "orders_v2", "d", ORDERS.columns)
    cache.add(renamed)
    assert cache.get(ORDERS.oid) is renamed
    with pytest.raises(MalformedMessage, match="16401"):
        cache.get(16401)


@pytest.mark.parametrize(
    ("type_oid", "text_value", "expected"),
    [
        (BOOL_OID, "t", True),
        (BOOL_OID, "f", False),
        (INT2_OID, "-12", -12),
        (INT4_OID, "2147483647", 2147483647),
        (INT8_OID, "9223372036854775807", 9223372036854775807),
        (OID_OID, "4294967295", 4294967295),
        (FLOAT4_OID, "1.5", 1.5),
        (FLOAT8_OID, "-2.25e+100", -2.25e100),
        (FLOAT8_OID, "NaN", "NaN"),
        (FLOAT8_OID, "Infinity", "Infinity"),
        (FLOAT4_OID, "-Infinity", "-Infinity"),
        # json and jsonb stay their text: spacing, key order, duplicates and every digit
        (
            JSON_OID,
            '{"b":  [1, 2], "a": 2.50, "a": 0.1000000000000000055511151231257827}',
            '{"b":  [1, 2], "a": 2.50, "a": 0.1000000000000000055511151231257827}',
        ),
        (JSONB_OID, '"text"', '"text"'),
        (
            JSONB_OID,
            '{"n": 37037036703703703670.370370367}',
            '{"n": 37037036703703703670.370370367}',
        ),
        (FLOAT8_OID, "-0", -0.0),
        (FLOAT8_OID, "5e-324", 5e-324),
        (NUMERIC_OID, "12345678901234567890.12", "12345678901234567890.12"),
        (TEXT_OID, "hello", "hello"),
        (1114, "2024-01-02 03:04:05.678901", "2024-01-02 03:04:05.678901"),  # timestamp
        (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (17, "\\xdeadbeef", "\\xdeadbeef"),  # bytea stays hex text
        (1007, "{1,2,3}", "{1,2,3}"),  # int4[] stays text
    ],
)
def test_convert_by_type_oid(type_oid: int, text_value: str, expected: object) -> None:
    assert convert(type_oid, text_value) == expected
    assert type(convert(type_oid, text_value)) is type(expected)


def relation_with(identity: str, *columns: tuple[str, bool]) -> Relation:
    described = tuple(Column(name, TEXT_OID, -1, key) for name, key in columns)
    return Relation(1, "public", "t", identity, described)


@pytest.mark.parametrize(
    ("relation", "primary_key", "expected"),
    [
        # FULL flags every column: the primary key groups instead, when there is one.
        (relation_with("f", ("a", True), ("id", True)), ["id"], ("id",)),
        (relation_with("f", ("a", True), ("b", True)), [], ("a", "b")),
        # A key the relation does not carry cannot group it: keep what pgoutput flagged.
        (relation_with("f", ("a", True)), ["gone"], ("a",)),
        # Default and USING INDEX: the flagged columns (a delete carries only those).
        (relation_with("d", ("id", True), ("a", False)), ["id"], ("id",)),
        (relation_with("i", ("id", False), ("code", True)), ["id"], ("code",)),
    ],
)
def test_group_columns_prefer_the_primary_key_only_under_full_identity(
    relation: Relation, primary_key: list[str], expected: tuple[str, ...]
) -> None:
    assert group_columns(relation, primary_key) == expected
