"""Exact JSON: numbers keep every digit and their scale, both ways, and where they go."""

import json
import math
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.dialects import postgresql as pg_types

from syncd import jsonvalue
from syncd.apply import mysql, postgresql, sqlite
from syncd.broker import Message
from syncd.change import key_text
from syncd.deadletter.letters import ErrorClass, Reason, dead_letter
from syncd.events import BadEvent, ChangeEvent, decode_body

HIGH = "37037036703703703670.370370367"


def event(after: str, seq: int = 1) -> str:
    return (
        '{"op": "c", "after": ' + after + ", "
        '"source": {"name": "crm", "table": "t", "seq": ' + str(seq) + "}}"
    )


@pytest.mark.parametrize(
    "text",
    [
        HIGH,
        "12345678901234567890.1234567891",
        "2.50",
        "0.1000000000000000055511151231257827",
        "-0.0",
        "0.0000000000",
        "0.0000001",
        "1.5e-320",
    ],
)
def test_numbers_read_and_write_back_with_every_digit(text: str) -> None:
    [value] = jsonvalue.loads(f"[{text}]")
    assert isinstance(value, Decimal) and value == Decimal(text)
    written = jsonvalue.dumps([value])
    assert Decimal(written[1:-1]) == Decimal(text)
    assert written == f"[{format(Decimal(text), 'f')}]"  # plain digits, as PostgreSQL writes


def test_scale_and_plain_digits_are_kept_not_decimals_exponent_form() -> None:
    assert jsonvalue.dumps(jsonvalue.loads("[2.50, 0.0000000000, 0.0000001]")) == (
        "[2.50,0.0000000000,0.0000001]"
    )


def test_integers_stay_ints_of_any_size() -> None:
    [small, big] = jsonvalue.loads("[7, 123456789012345678901234567890]")
    assert type(small) is int and type(big) is int and big == 123456789012345678901234567890


def test_a_hostile_exponent_is_written_in_exponent_form_not_as_a_billion_zeros() -> None:
    written = jsonvalue.dumps(jsonvalue.loads("[1e999999999]"))
    assert written == "[1E+999999999]"


def test_spaced_text_is_postgresql_jsonb_spacing_and_refuses_nan() -> None:
    assert jsonvalue.dumps_spaced({"a": [1, Decimal("2.50")]}) == '{"a": [1, 2.50]}'
    with pytest.raises(ValueError):
        jsonvalue.dumps_spaced([float("nan")])


def test_message_bodies_decode_high_precision_numbers_exactly() -> None:
    [decoded] = decode_body(event('{"id": 1, "n": ' + HIGH + ', "doc": {"x": 2.50}}').encode())
    assert isinstance(decoded, ChangeEvent) and decoded.after is not None
    assert decoded.after["n"] == Decimal(HIGH)
    assert jsonvalue.dumps(decoded.after["doc"]) == '{"x":2.50}'
    assert not decoded.non_finite


def test_bare_nan_and_infinity_are_values_marked_for_the_target_check() -> None:
    [decoded] = decode_body(event('{"id": 1, "f": NaN, "g": -Infinity}'))
    assert isinstance(decoded, ChangeEvent) and decoded.after is not None
    assert math.isnan(decoded.after["f"]) and decoded.after["g"] == -math.inf
    assert decoded.non_finite


def test_postgresql_spelling_of_nan_as_text_is_marked_too() -> None:
    [decoded] = decode_body(event('{"id": 1, "n": "NaN"}'))
    assert isinstance(decoded, ChangeEvent) and decoded.non_finite


def test_a_document_holding_nan_dead_letters_that_event_alone() -> None:
    body = "[" + event('{"id": 1, "doc": {"x": [NaN]}}') + "," + event('{"id": 2}', 2) + "]"
    bad, good = decode_body(body)
    assert isinstance(bad, BadEvent) and "'doc'" in str(bad.error) and "NaN" in str(bad.error)
    assert isinstance(good, ChangeEvent)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # As json.dumps wrote the float syncd used to read: existing keys keep their text.
        ("1.5", "[1.5]"),
        ("1.50", "[1.5]"),  # the same numeric key as 1.5
        ("1E+5", "[100000.0]"),
        ("0.0000001", "[1e-07]"),
        ("2.5e-320", "[2.5e-320]"),
        # Where no float is the number: every digit, which a float would have merged.
        (HIGH, f"[{HIGH}]"),
        ("0.1000000000000000055511151231257827", "[0.1000000000000000055511151231257827]"),
        ("1.2300000000000000000000001000", "[1.2300000000000000000000001]"),
    ],
)
def test_key_text_of_a_decimal_is_what_floats_gave_where_a_float_is_exact(
    value: str, text: str
) -> None:
    [number] = jsonvalue.loads(f"[{value}]")
    assert key_text([number]) == text
    assert key_text([number, "a"]) == text[:-1] + ',"a"]'


def test_key_text_of_ints_and_text_is_unchanged() -> None:
    assert key_text([7]) == "[7]" and key_text(["é"]) == '["é"]'
    assert key_text([7, "x"]) == json.dumps([7, "x"], separators=(",", ":"))


def test_dead_letter_of_one_event_keeps_its_numbers() -> None:
    message = Message(b"[]", {}, "/queue/syncd.crm", "m1", "a1", 1)
    element = jsonvalue.loads('{"n": ' + HIGH + ', "d": 2.50}')
    letter = dead_letter("/queue/dlq", message, Reason(ErrorClass.MAPPING, "x"), 0, element)
    assert letter.body == ('{"n":' + HIGH + ',"d":2.50}').encode()


def test_postgresql_parameter_carries_digits_and_nan_as_the_text_numeric_reads() -> None:
    rows = [{"n": Decimal(HIGH), "f": float("nan"), "g": Decimal("-Infinity"), "j": {"x": 2.5}}]
    text = postgresql._json(rows)
    assert json.loads(text) == [{"n": float(HIGH), "f": "NaN", "g": "-Infinity", "j": {"x": 2.5}}]
    assert HIGH in text


def test_postgresql_dead_letters_nan_for_columns_that_cannot_hold_it() -> None:
    types = {
        "n": pg_types.NUMERIC(),
        "r": pg_types.REAL(),
        "i": sa.Integer(),
        "j": pg_types.JSONB(),
    }
    assert postgresql.check_row({"n": float("nan"), "r": Decimal("Infinity")}, types) is None
    assert "cannot hold NaN" in (postgresql.check_row({"i": float("nan")}, types) or "")
    assert "cannot hold -Infinity" in (postgresql.check_row({"j": "-Infinity"}, types) or "")
    types["at"] = pg_types.TIMESTAMP()
    assert postgresql.check_row({"at": "-Infinity"}, types) is None  # timestamps read it
    assert "cannot hold NaN" in (postgresql.check_row({"at": "NaN"}, types) or "")


def test_mysql_dead_letters_every_nan_and_infinity_in_a_number_column() -> None:
    types = {"d": mysql_types.DOUBLE(), "t": mysql_types.LONGTEXT()}
    assert "cannot hold NaN" in (mysql.check_row({"d": float("nan")}, types) or "")
    assert "cannot hold Infinity" in (mysql.check_row({"d": "Infinity"}, types) or "")
    assert mysql.check_row({"t": "NaN", "d": Decimal("1.5")}, types) is None


@pytest.mark.parametrize(
    ("declared", "value", "bound"),
    [
        ("REAL", Decimal("2.50"), 2.5),
        ("DOUBLE PRECISION", Decimal(HIGH), float(HIGH)),
        ("NUMERIC(30, 10)", Decimal(HIGH), HIGH),  # SQLite converts by its own rules
        ("TEXT", jsonvalue.loads("[0.0000000000]")[0], "0.0000000000"),
        ("", Decimal("2.50"), "2.50"),
        ("REAL", Decimal("NaN"), "NaN"),  # SQLite would store a NaN as NULL
        ("REAL", float("nan"), "NaN"),
        ("REAL", "-Infinity", -math.inf),
        ("REAL", float("inf"), math.inf),
        ("NUMERIC", float("inf"), "Infinity"),
        ("NUMERIC", Decimal("-Infinity"), "-Infinity"),
        ("TEXT", {"a": Decimal("2.50")}, '{"a": 2.50}'),
        ("INTEGER", 2**63 - 1, 2**63 - 1),
        ("INTEGER", 2**63, str(2**63)),  # sqlite3 raises OverflowError past 64 bits
        ("REAL", -(10**308), -1e308),  # to_jsonb writes a big double as a whole number
        ("JSON", '{"a":  1}', '{"a":  1}'),  # a json column's text, as it came
    ],
)
def test_sqlite_binds_by_column_affinity(declared: str, value: object, bound: object) -> None:
    assert sqlite.binder(sa.types.NullType() if not declared else _type(declared))(value) == bound


def _type(declared: str) -> object:
    class Declared:
        def __str__(self) -> str:
            return declared

    return Declared()


@pytest.mark.parametrize(
    ("declared", "affinity"),
    [
        ("INTEGER", "INTEGER"),
        ("BIGINT", "INTEGER"),
        ("VARCHAR(20)", "TEXT"),
        ("CLOB", "TEXT"),
        ("BLOB", "BLOB"),
        ("REAL", "REAL"),
        ("FLOAT", "REAL"),
        ("DOUBLE", "REAL"),
        ("NUMERIC(30, 10)", "NUMERIC"),
        ("DECIMAL", "NUMERIC"),
        ("JSON", "NUMERIC"),
        ("BOOLEAN", "NUMERIC"),
    ],
)
def test_sqlite_affinity_follows_sqlites_rules(declared: str, affinity: str) -> None:
    assert sqlite.affinity(_type(declared)) == affinity


def test_the_postgresql_parameter_writes_bytes_as_bytea_hex_not_as_text() -> None:
    # simplejson would read bytes as UTF-8 text (failing on 0xff) unless told not to.
    from syncd.apply import postgresql

    assert postgresql._json([{"b": b"\xff\x00a", "n": Decimal("2.50")}]) == (
        '[{"b": "\\\\xff0061", "n": 2.50}]'
    )
