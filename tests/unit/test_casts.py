"""Column transforms and casts: what each makes of what events carry, and what it refuses."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest

from syncd.errors import MappingApplyError
from syncd.mapping.casts import CASTS, cast
from syncd.mapping.transforms import TRANSFORMS, apply_transforms

# --- transforms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "value", "expected"),
    [
        (["lower"], "ÄnA", "äna"),
        (["upper"], "straße", "STRASSE"),
        (["trim"], " \t x \n", "x"),
        (["trim", "upper"], "  ana ", "ANA"),
        (["upper", "trim"], "  ana ", "ANA"),
        (["sha256"], "ana@x.org", hashlib.sha256(b"ana@x.org").hexdigest()),
        (["trim", "lower", "sha256"], " Ana@X.org ", hashlib.sha256(b"ana@x.org").hexdigest()),
        (["sha256"], "", hashlib.sha256(b"").hexdigest()),
        (["sha256"], "🙂", hashlib.sha256("🙂".encode()).hexdigest()),
        (["mask"], "4111111111111111", "************1111"),
        (["mask"], "1234", "****"),  # four or fewer: hidden whole
        (["mask"], "", ""),
        (["mask"], "a🙂b🙂cd", "**b🙂cd"),  # characters, not bytes
        (["nullif_empty"], "", None),
        (["nullif_empty"], " ", " "),
        (["trim", "nullif_empty"], "   ", None),
        (["nullif_empty", "upper"], "", None),  # null stays null down the chain
        ([], 42, 42),
    ],
)
def test_transforms_apply_in_the_order_listed(names: list[str], value: Any, expected: Any) -> None:
    assert apply_transforms(names, value) == expected


def test_every_transform_passes_null_through() -> None:
    for name in TRANSFORMS:
        assert apply_transforms([name], None) is None


@pytest.mark.parametrize("value", [42, Decimal("1.5"), True, ["a"], {"a": 1}])
def test_a_transform_of_what_is_not_text_is_an_error_naming_its_type(value: Any) -> None:
    with pytest.raises(MappingApplyError, match="transform 'sha256' needs text, found"):
        apply_transforms(["sha256"], value)


def test_sha256_of_a_lone_surrogate_does_not_crash() -> None:
    assert len(apply_transforms(["sha256"], "\ud800")) == 64


# --- casts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("text", "abc", "abc"),
        ("text", 42, "42"),
        ("text", Decimal("1.50"), "1.50"),
        ("text", Decimal("1E+2"), "100"),
        ("text", True, "true"),
        ("text", {"a": [1, "x"]}, '{"a":[1,"x"]}'),
        ("text", {"a": [1, Decimal("2.50")]}, '{"a":[1,2.50]}'),
        ("int", 42, 42),
        ("int", "42", 42),
        ("int", " -7 ", -7),
        ("int", Decimal("3.0"), 3),
        ("int", 2**31 - 1, 2**31 - 1),
        ("int", -(2**31), -(2**31)),
        ("bigint", "9223372036854775807", 2**63 - 1),
        ("bigint", -(2**63), -(2**63)),
        ("numeric", "37037036703703703670.370370367", Decimal("37037036703703703670.370370367")),
        ("numeric", 5, Decimal(5)),
        ("numeric", 0.1, Decimal("0.1")),  # the float's digits, not 0.1000000000000000055…
        ("numeric", Decimal("-0.00"), Decimal("-0.00")),
        ("float", "1.5", 1.5),
        ("float", 3, 3.0),
        ("float", "NaN", float("nan")),
        ("float", "-Infinity", float("-inf")),
        ("bool", "true", True),
        ("bool", "FALSE", False),
        ("bool", "t", True),
        ("bool", "no", False),
        ("bool", 1, True),
        ("bool", 0, False),
        ("bool", False, False),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", 0, "1970-01-01"),
        ("date", 19782, "2024-02-29"),  # days since the epoch (Debezium's Date)
        ("date", -1, "1969-12-31"),
        ("timestamp", "2024-01-31T12:00:00", "2024-01-31 12:00:00"),
        ("timestamp", "2024-01-31 12:00:00.123456+02:00", "2024-01-31 12:00:00.123456+02:00"),
        ("timestamp", "2024-01-31T12:00:00Z", "2024-01-31 12:00:00+00:00"),
        ("timestamp", 1706702400, "2024-01-31 12:00:00"),  # seconds
        ("timestamp", 1706702400123, "2024-01-31 12:00:00.123000"),  # milliseconds
        ("timestamp", 1706702400123456, "2024-01-31 12:00:00.123456"),  # microseconds
        ("timestamp", 1706702400123456789, "2024-01-31 12:00:00.123457"),  # nanoseconds
        ("timestamp", 0, "1970-01-01 00:00:00"),
        ("timestamp", -86400, "1969-12-31 00:00:00"),
        (
            "json",
            '{"a": 0.1000000000000000055511151231257827}',
            {"a": Decimal("0.1000000000000000055511151231257827")},
        ),
        ("json", "[1, 2]", [1, 2]),
        ("json", {"already": "a document"}, {"already": "a document"}),
    ],
)
def test_casts_read_what_producers_send(kind: str, value: Any, expected: Any) -> None:
    result = cast(kind, value)
    if isinstance(expected, float) and expected != expected:
        assert result != result  # NaN
        return
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        ("int", "4.5", "cannot cast the text '4.5' to int"),
        ("int", 2**31, "to int; send a whole number from -2147483648 to 2147483647"),
        ("int", True, "cannot cast the boolean true to int"),
        ("int", "", "cannot cast the text '' to int"),
        ("bigint", 2**63, "cannot cast the number 9223372036854775808 to bigint"),
        ("int", "NaN", "cannot cast the text 'NaN' to int"),
        ("numeric", "Infinity", "cannot cast the text 'Infinity' to numeric"),
        ("numeric", "12,5", "cannot cast the text '12,5' to numeric"),
        ("numeric", [1], "cannot cast a JSON array to numeric"),
        ("float", "abc", "cannot cast the text 'abc' to float"),
        ("bool", "maybe", "cannot cast the text 'maybe' to bool"),
        ("bool", 2, "cannot cast the number 2 to bool"),
        ("date", "2024-02-30", "cannot cast the text '2024-02-30' to date"),
        ("date", "31/01/2024", "send an ISO 8601 date such as '2024-01-31'"),
        ("date", 10**9, "cannot cast the number 1000000000 to date"),
        ("date", 1.5, "cannot cast the number 1.5 to date"),
        ("timestamp", "yesterday", "cannot cast the text 'yesterday' to timestamp"),
        ("timestamp", 10**30, "to timestamp"),
        ("json", "{not json", "cannot cast the text '{not json' to json"),
    ],
)
def test_a_value_that_cannot_be_cast_is_an_error_naming_its_type(
    kind: str, value: Any, says: str
) -> None:
    with pytest.raises(MappingApplyError) as caught:
        cast(kind, value)
    assert says in str(caught.value)


def test_null_stays_null_whatever_the_cast() -> None:
    for kind in CASTS:
        assert cast(kind, None) is None
