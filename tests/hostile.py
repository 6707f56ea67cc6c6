"""Hostile message bodies, and the path every body takes to a statement's parameters.

Shared by the fuzz test (hypothesis draws the bodies), the replay of the bodies it once broke
(tests/data/hostile/), and the end-to-end run. ``through_pipeline`` takes a body as the daemon
does — decode, route against a target table of one dialect, plan — and adapts every parameter
the applier would send with that dialect's real driver, then builds each dead letter. Whatever
the body, only syncd's own decode and mapping errors may come out of decoding and routing, and
the driver must be able to take every value that got past them.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql.converters
import sqlalchemy as sa
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql

from syncd import jsonvalue
from syncd.apply import dialect as dialect_module
from syncd.apply import postgresql as pg_applier
from syncd.apply.plan import plan_batch
from syncd.broker import Message
from syncd.change import Change
from syncd.deadletter.letters import ErrorClass, Reason, dead_letter
from syncd.errors import DecodeError, MappingApplyError, NoMappingError
from syncd.events import BadEvent, ChangeEvent, decode_body
from syncd.mapping import ColumnMap, Mapping, OnDelete
from syncd.routing import Router
from syncd.values import TargetLimits

DATA = Path(__file__).parent / "data" / "hostile"
DIALECTS = ("postgresql", "sqlite", "mysql")

# The target table of the fuzzed events, as each dialect reflects it.
TARGET_TYPES: dict[str, dict[str, Any]] = {
    "postgresql": {"id": postgresql.BIGINT(), "name": postgresql.TEXT(),
                   "small": postgresql.SMALLINT(), "count": postgresql.INTEGER(),
                   "ratio": postgresql.DOUBLE_PRECISION(), "doc": postgresql.JSONB()},
    "mysql": {"id": mysql.BIGINT(), "name": mysql.TEXT(), "small": mysql.TINYINT(unsigned=True),
              "count": mysql.INTEGER(), "ratio": mysql.DOUBLE(), "doc": mysql.JSON()},
    "sqlite": {"id": sa.INTEGER(), "name": sa.TEXT(), "small": sa.SMALLINT(),
               "count": sa.INTEGER(), "ratio": sa.REAL(), "doc": sa.TEXT()},
}  # fmt: skip
COLUMNS = frozenset(TARGET_TYPES["sqlite"])


def _mapping(name: str, table: str, columns: tuple[ColumnMap, ...] | None) -> Mapping:
    return Mapping(
        name, "crm", table, "warehouse", name, ("id",), columns, OnDelete("delete"), "f.yaml", 1
    )


MAPPINGS = [
    _mapping("every_column", "public.customers", None),  # event column names reach SQL
    _mapping(
        "renamed",
        "customers",
        (ColumnMap("id", "id"), ColumnMap("email", "name", ("lower",))),
    ),
]


def router_for(dialect: str) -> Router:
    columns = [{"name": n, "type": t} for n, t in TARGET_TYPES[dialect].items()]
    limits = TargetLimits.reflected(dialect, columns)  # type: ignore[arg-type]
    return Router(MAPPINGS, lambda m: COLUMNS, lambda m: limits)


# -- what the fuzzer draws -------------------------------------------------------------------

NASTY_TEXT = [
    "\ud800", "\udfff", "a\udc00b", "\x00", "a\x00b", "\ufeff", "１２３", "²", "NaN", "",
    'x"; DROP TABLE t; --', "x'); DROP TABLE t; --", "%s", "%(id)s", "?", ":id", "\\", "\\u0000",
    "a" * 63, "a" * 64, "é" * 32, "é" * 33, "\n\r\t", "é😀", "\u2028", "\x7f",
]  # fmt: skip
NASTY_INTEGERS = [
    0, -1, 127, 128, 255, 256, 2**15, -(2**15) - 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1,
    2**64, 10**30, 10**100,
]  # fmt: skip

texts = st.sampled_from(NASTY_TEXT) | st.text(
    st.characters(exclude_categories=()), max_size=12
)  # surrogates and controls included
numbers = (
    st.sampled_from(NASTY_INTEGERS)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e308, -0.0, 5e-324])
)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
column_names = st.sampled_from([*sorted(COLUMNS), "email", "id", "Id"]) | texts
rows = st.builds(
    lambda key, rest: {"id": key, **rest} if key is not ... else rest,
    st.just(...) | scalars | st.sampled_from([1, 2, 3]),
    st.dictionaries(column_names, json_values, max_size=5),
)
positions = st.integers(min_value=0, max_value=2**63 - 1) | numbers | texts | st.just("42")
sources = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["crm", "crm", "crm"]) | texts,
        "table": st.sampled_from(["customers", "customers"]) | texts,
        "seq": positions,
    },
    optional={
        "schema": st.sampled_from(["public", None]) | json_values,
        "ts_ms": st.integers() | numbers | texts,
        "lsn": positions,
    },
)
# Events a router takes: only their values (and some column names) are hostile.
plausible_rows = st.builds(
    lambda key, rest: {**rest, "id": key},
    st.integers(1, 5) | scalars,
    st.dictionaries(st.sampled_from(sorted(COLUMNS)) | column_names, json_values, max_size=5),
)
plausible_events = st.builds(
    lambda op, row, seq, extra: {
        "op": op,
        "before" if op == "d" else "after": row,
        "source": {"name": "crm", "schema": "public", "table": "customers", "seq": seq},
        **extra,
    },
    st.sampled_from(["c", "u", "r", "d"]),
    plausible_rows,
    st.integers(0, 2**63 - 1),
    st.fixed_dictionaries({}, optional={"id": texts | st.integers(), "ts_ms": st.integers()}),
)
events = st.fixed_dictionaries(
    {"op": st.sampled_from(["c", "u", "d", "r", "t"]) | json_values, "source": sources},
    optional={
        "before": rows | json_values,
        "after": rows | json_values,
        "id": texts | numbers | json_values,
        "ts_ms": numbers,
        "unavailable": st.lists(texts, max_size=2) | json_values,
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """One message body: an event, an array of them, either mangled, or noise."""
    kind = draw(
        st.sampled_from(
            ["plausible"] * 4 + ["event", "array", "wrapped", "mangled", "noise", "nested"]
        )
    )
    if kind == "noise":
        return draw(st.binary(max_size=64))
    if kind == "nested":
        depth = draw(st.integers(1, 5000))
        inner = draw(st.sampled_from(['"x"', "1", '{"a":1}', '"\\ud800"']))
        return ('{"op":"c","after":{"id":1,"doc":' + "[" * depth + inner + "]" * depth).encode()
    document: Any = draw(plausible_events if kind == "plausible" else events)
    if kind == "array":
        document = draw(st.lists(plausible_events | events, min_size=1, max_size=4))
    if kind == "wrapped":
        document = {"schema": draw(json_values), "payload": document}
    ascii_only = draw(st.booleans())
    text = json.dumps(document, ensure_ascii=ascii_only, allow_nan=True)
    if draw(st.booleans()):
        text = _duplicate_a_key(text)
    data = text.encode("utf-8", "surrogatepass")  # unescaped surrogates: not UTF-8 at all
    if kind == "mangled":
        data = draw(_mangled(data))
    return data


def _duplicate_a_key(text: str) -> str:
    """A second ``"id"`` in the first object that has one: the last one wins."""
    return re.sub(r'"id": ', '"id": "first", "id": ', text, count=1)


def _mangled(data: bytes) -> st.SearchStrategy[bytes]:
    cut = st.integers(0, max(0, len(data) - 1))
    return st.one_of(
        cut.map(lambda i: data[:i]),  # truncated
        st.just(b"\xef\xbb\xbf" + data),  # a BOM
        st.tuples(cut, st.binary(min_size=1, max_size=4)).map(
            lambda c: data[: c[0]] + c[1] + data[c[0] + 1 :]
        ),  # bytes replaced: invalid UTF-8, broken syntax
        st.just(data.replace(b"1", b"1e400", 1)),  # a number past a float's range
    )


# -- the path to the driver ------------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one body: changes planned, events dead-lettered (class and reason)."""

    changes: int = 0
    dead_letters: list[tuple[str, str]] = field(default_factory=list)


Adapter = Callable[[list[Any]], None]  # a dialect's driver taking one statement's parameters


def through_pipeline(body: bytes, dialect: str, adapt: Adapter) -> Outcome:
    """Decode, route and plan ``body`` for a target of ``dialect``, and adapt what it sends.

    Raises AssertionError (or whatever escaped) where a body gets past syncd's checks.
    """
    outcome = Outcome()
    message = Message(body, {"message-id": "m1"}, "/queue/syncd.crm", "m1", "a1", 0)
    try:
        slots = decode_body(body)
    except DecodeError as exc:
        outcome.dead_letters.append(_letter(message, ErrorClass.DECODE, str(exc)))
        return outcome
    by_mapping: dict[str, list[Change]] = defaultdict(list)
    router = router_for(dialect)
    for index, slot in enumerate(slots):
        if isinstance(slot, BadEvent):
            outcome.dead_letters.append(_letter(message, ErrorClass.DECODE, str(slot.error), slot))
            continue
        _assert_storable_text(slot)
        try:
            for change in router.changes_for(slot):
                by_mapping[change.mapping.name].append(change)
        except (NoMappingError, MappingApplyError) as exc:
            reason = str(exc)
            outcome.dead_letters.append(_letter(message, ErrorClass.MAPPING, reason, slot, index))
    for changes in by_mapping.values():
        outcome.changes += len(changes)
        _adapt_plan(changes, dialect, adapt)
    return outcome


def _letter(
    message: Message, error_class: ErrorClass, text: str, slot: Any = None, index: int = 0
) -> tuple[str, str]:
    """The dead letter as the loop would send it; its headers must go in a STOMP frame."""
    reason = Reason(error_class, text)
    if slot is None:
        letter = dead_letter("/queue/syncd.DLQ", message, reason)
    else:
        letter = dead_letter("/queue/syncd.DLQ", message, reason, index, slot.raw)
    for value in letter.headers.values():
        assert value.isprintable(), f"unprintable dead-letter header: {value!r}"
        value.encode()
    assert isinstance(letter.body, bytes)
    return str(error_class), letter.headers["syncd-error"]


def _assert_storable_text(event: ChangeEvent) -> None:
    """No decoded event may hold a lone surrogate: no driver can encode one."""
    for part in (event.before, event.after, event.system, event.table, event.event_id):
        text = json.dumps(part, ensure_ascii=False, default=str)
        text.encode("utf-8")  # UnicodeEncodeError: a surrogate got past decoding


def _adapt_plan(changes: list[Change], dialect: str, adapt: Adapter) -> None:
    actions, _ = plan_batch(changes, {})
    rows = []
    for action in actions.values():
        if action.row:
            row = dict(action.row)
            row.update(action.target_key)
            rows.append(row)
        if dialect == "postgresql":
            for value in action.target_key.values():
                assert "\x00" not in jsonvalue.dumps(value), "a NUL reached a PostgreSQL key"
    positions = [
        {
            "mapping": changes[0].mapping.name,
            "row_key": a.key,
            "position": a.position,
            "event_id": a.last.event.event_id[:200] if a.last else None,
            "deleted": a.delete,
            "source_ts_ms": a.last.event.source_ts_ms if a.last else None,
            "incomplete": a.incomplete,
        }
        for a in actions.values()
    ]
    if dialect == "postgresql":
        # One JSON parameter per statement (syncd.apply.postgresql); the server reads it.
        for batch in (rows, positions):
            parameter = pg_applier._json(batch)
            assert "\\u0000" not in parameter.replace("\\\\", ""), "a NUL reached PostgreSQL"
            adapt([parameter])
        adapt([changes[0].mapping.name, [a.key for a in actions.values()]])
        return
    # Each value bound as the applier binds it: by its target column's type.
    binder = dialect_module(dialect).binder
    types = TARGET_TYPES[dialect]
    for row in [*rows, *positions]:
        adapt([binder(types.get(column))(v) for column, v in row.items()])


def sqlite_adapter() -> Adapter:
    """sqlite3's own binding of each parameter, in a statement that stores nothing."""
    connection = sqlite3.connect(":memory:")

    def adapt(parameters: list[Any]) -> None:
        if parameters:
            marks = ", ".join("?" * len(parameters))
            try:
                connection.execute(f"SELECT {marks}", parameters).fetchall()
            except sqlite3.ProgrammingError as exc:
                raise AssertionError(f"sqlite3 cannot bind {parameters!r}: {exc}") from exc

    return adapt


def mysql_adapter() -> Adapter:
    """PyMySQL's escaping of each parameter, and the UTF-8 query text it sends."""

    def adapt(parameters: list[Any]) -> None:
        try:
            literals = [pymysql.converters.escape_item(p, "utf8mb4") for p in parameters]
        except pymysql.err.ProgrammingError:
            return  # "nan can not be used with MySQL": a DBAPI error, classified as permanent
        ("SELECT " + ", ".join(literals)).encode("utf-8")

    return adapt


def postgresql_adapter(connection: Any) -> Adapter:
    """psycopg2's mogrify: each parameter adapted and encoded as it would be sent."""
    cursor = connection.cursor()

    def adapt(parameters: list[Any]) -> None:
        cursor.mogrify("SELECT " + ", ".join(["%s"] * len(parameters)), parameters)

    return adapt


def regression_bodies() -> list[Path]:
    return sorted(DATA.glob("*.json"))
