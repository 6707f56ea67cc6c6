"""`syncd check` against the target: casts and set: values that the column types cannot take."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from syncd.apply.fit import column_kind, misfits
from tests.unit.test_mapping import GOOD_BODY, item, load_one


def test_column_kinds_of_each_dialect() -> None:
    assert column_kind(sa.INTEGER()) == "integer"
    assert column_kind(sa.BigInteger()) == "integer"
    assert column_kind(sa.NUMERIC(30, 10)) == "numeric"
    assert column_kind(postgresql.DOUBLE_PRECISION()) == "float"
    assert column_kind(sa.Boolean()) == "bool"
    assert column_kind(mysql.TINYINT()) == "integer"
    assert column_kind(sa.Date()) == "date"
    assert column_kind(postgresql.TIMESTAMP(timezone=True)) == "timestamp"
    assert column_kind(postgresql.JSONB()) == "json"
    assert column_kind(sa.Text()) == "text"
    assert column_kind(postgresql.ENUM("a", name="e")) == "text"
    assert column_kind(postgresql.UUID()) is None  # not judged


def test_casts_and_constants_that_fit_raise_nothing(tmp_path: Path) -> None:
    body = GOOD_BODY + (
        "columns: {id: {type: bigint}, d: {type: date}, n: {type: numeric}, j: {type: json}}\n"
        "set: {region: EU, tier: 3, at: {from: commit_time}, pos: {from: position}}\n"
    )
    mapping = load_one(tmp_path, item(body))
    types = {
        "id": sa.BigInteger(),
        "d": sa.Date(),
        "n": sa.NUMERIC(),
        "j": postgresql.JSONB(),
        "region": sa.Text(),
        "tier": sa.SmallInteger(),
        "at": postgresql.TIMESTAMP(timezone=True),
        "pos": sa.BigInteger(),
    }
    assert misfits(mapping, types) == []


def test_what_cannot_fit_is_named_with_what_would(tmp_path: Path) -> None:
    body = GOOD_BODY + (
        "columns: {id: x, d: {type: date}}\n"
        "set: {region: EU, flag: true, at: {from: commit_time}, big: 99999999999999999999}\n"
    )
    mapping = load_one(tmp_path, item(body))
    types = {
        "x": sa.Integer(),
        "d": sa.Integer(),
        "region": sa.NUMERIC(),
        "flag": sa.Date(),
        "at": sa.Integer(),
        "big": sa.BigInteger(),
    }
    assert misfits(mapping, types) == [
        "columns.d: type: date cannot fill d (integer column); cast to one of int, bigint, bool",
        "set.region: cannot cast the text 'EU' to numeric; send a number or numeric text such "
        "as '12.50' (the column is numeric)",
        "set.flag: the boolean true cannot fill a date column",
        "set.at: {from: commit_time} gives timestamp, which cannot fill at (integer column)",
        "set.big: cannot cast the number 99999999999999999999 to bigint; send a whole number "
        "from -9223372036854775808 to 9223372036854775807 (the column is integer)",
    ]
