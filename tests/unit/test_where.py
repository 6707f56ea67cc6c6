"""The where: filter: grammar, precedence, quoting, SQL NULLs, like, errors with positions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from syncd.errors import MappingApplyError
from syncd.mapping.where import WhereSyntaxError, parse_where

ROW = {
    "country": "DE",
    "status": "open",
    "age": 42,
    "score": Decimal("0.1000000000000000055511151231257827"),
    "vip": True,
    "nick": None,
    "name": "O'Brien",
    "email": "ana_1@example.org",
}


def passes(text: str, row: dict[str, Any] | None = None) -> bool:
    return parse_where(text).matches(ROW if row is None else row)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("country in ('DE', 'FR') and status <> 'closed'", True),
        ("country not in ('DE', 'FR')", False),
        ("age = 42", True),
        ("age <> 42", False),
        ("age != 41", True),
        ("age < 42.5 and age <= 42 and age > -1 and age >= 42", True),
        ("age > 1e2", False),
        ("score = 0.1000000000000000055511151231257827", True),  # exact, not through a float
        ("score = 0.1", False),
        ("vip", True),
        ("vip = true and not vip = false", True),
        ("name = 'O''Brien'", True),
        ("email like '%@example.org'", True),
        ("email like 'ana\\_1@%'", True),  # \\_ is a literal underscore
        ("email like 'anaX1@%'", False),
        ("email not like '%.com'", True),
        ("email like 'ANA%'", False),  # like is case-sensitive, as in PostgreSQL
        ("nick is null", True),
        ("nick is not null", False),
        ("status is not null", True),
        ("COUNTRY = 'DE' AND Status = 'open'", False),  # names are case-sensitive, keywords not
        ("\"country\" = 'DE'", True),
    ],
)
def test_filters_evaluate_like_sql(text: str, expected: bool) -> None:
    if text.startswith("COUNTRY"):
        with pytest.raises(MappingApplyError, match="no column COUNTRY, Status"):
            passes(text)
        return
    assert passes(text) is expected


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    assert passes("country = 'FR' and age = 1 or status = 'open'") is True
    assert passes("country = 'FR' and (age = 1 or status = 'open')") is False
    assert passes("not country = 'FR' and age = 42") is True
    assert passes("not (country = 'DE' and age = 42)") is False
    assert passes("not not vip") is True


@pytest.mark.parametrize(
    "text",
    [
        "nick = 'x'",  # NULL = x is not true
        "nick <> 'x'",  # ... and neither is NULL <> x
        "not nick = 'x'",  # not unknown is unknown
        "nick = null",
        "null = null",
        "nick in ('a', 'b')",
        "country in ('FR', null)",  # no match, and a NULL in the list: unknown
        "country not in ('FR', null)",
        "nick like '%'",
        "vip and nick = 'x'",
    ],
)
def test_null_makes_a_comparison_unknown_and_unknown_keeps_the_row_out(text: str) -> None:
    assert passes(text) is False


def test_unknown_combines_by_three_valued_logic() -> None:
    assert passes("nick = 'x' or vip") is True  # unknown or true is true
    assert passes("nick = 'x' and not vip") is False  # unknown and false is false
    assert passes("country in ('DE', null)") is True  # a match wins over the NULL


def test_a_row_lacking_a_filtered_column_is_an_error_naming_it() -> None:
    where = parse_where("country = 'DE' and status <> 'closed'")
    assert where.columns == {"country", "status"}
    with pytest.raises(MappingApplyError, match="no column status, which 'where' reads"):
        where.matches({"country": "DE"})


@pytest.mark.parametrize(
    ("text", "row", "says"),
    [
        (
            "age = '42'",
            {"age": 42},
            "'where' cannot compare column age (the number 42) with the text '42' (=)",
        ),
        (
            "vip = 1",
            {"vip": True},
            "'where' cannot compare column vip (the boolean true) with the number 1",
        ),
        (
            "tags = 'a'",
            {"tags": ["a"]},
            "'where' cannot compare column tags (a JSON array) with the text",
        ),
        (
            "x in ('a', 1)",
            {"x": 1},
            "'where' cannot compare column x (the number 1) with the text 'a' (in)",
        ),
        ("age like '4%'", {"age": 42}, "'like' needs text, found column age (the number 42)"),
        ("age", {"age": 42}, "'where' needs true or false here, found column age (the number 42)"),
    ],
)
def test_values_of_different_kinds_are_an_error_not_a_silent_false(
    text: str, row: dict[str, Any], says: str
) -> None:
    with pytest.raises(MappingApplyError) as caught:
        parse_where(text).matches(row)
    assert str(caught.value).startswith(says)


@pytest.mark.parametrize(
    ("text", "column", "says"),
    [
        ("country = ", 11, "expected a column, a 'text', a number, true, false, null or '('"),
        ("country = 'DE", 11, "text is not closed"),
        ("country == 'DE'", 10, "expected a column"),
        ("country in 'DE'", 12, "expected '(' and a list of values after 'in'"),
        ("country in ('DE' 'FR')", 18, "expected ',' or ')'"),
        ("(country = 'DE'", 16, "expected ')' to close the '('"),
        ("country = 'DE' status = 'x'", 16, "expected 'and', 'or' or the end"),
        ("nick is nul", 9, "expected null after 'is'"),
        ("email like 42", 12, "expected a 'text' pattern after 'like'"),
        ("age ; drop table t", 5, "unexpected ';'"),
        ("", 1, "expected a column"),
    ],
)
def test_a_syntax_error_says_where_and_what_to_write(text: str, column: int, says: str) -> None:
    with pytest.raises(WhereSyntaxError) as caught:
        parse_where(text)
    assert says in str(caught.value)
    assert caught.value.column == column


def test_unicode_and_long_texts_and_big_numbers() -> None:
    row = {"city": "Zürich 🏔", "n": 2**70, "blob": "x" * 100_000}
    assert passes("city = 'Zürich 🏔' and n > 1180591620717411303423", row)
    assert passes("blob like 'x%x'", row)
    assert passes("n = 1180591620717411303424", row)
