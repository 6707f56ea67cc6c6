"""The type tables, the wanted target table of a mapping, on_new_column in mappings and in
routing: pure logic, no database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.apply.evolve import NewColumn, wanted_columns
from syncd.change import Change
from syncd.commands.schema_plan import same_type
from syncd.commands.schema_plan import wanted_columns as mapping_columns
from syncd.errors import MappingApplyError
from syncd.events import ChangeEvent, decode_event
from syncd.mapping import Mapping
from syncd.routing import Router
from syncd.schema.catalog import SourceColumn, SourceTable
from syncd.schema.debezium import declared_types
from syncd.schema.types import NoSafeType, json_type, target_type
from syncd.values import TargetLimits
from tests.unit.test_mapping import GOOD_BODY, item, load_one, problems

# --- the type table -------------------------------------------------------------------------

PG_TYPES = [
    "integer", "bigint", "smallint", "numeric(12,2)", "numeric", "numeric(1000,500)",
    "timestamp with time zone", "timestamp(3) without time zone", "date", "boolean", "jsonb",
    "json", "bytea", "text", "character varying(80)", "uuid", "interval", "integer[]",
    "time with time zone", "double precision", "real", "inet", "bit varying(5)", "\"char\"",
]  # fmt: skip


@pytest.mark.parametrize("source", PG_TYPES)
def test_a_postgresql_target_declares_the_source_type_exactly(source: str) -> None:
    assert target_type(source, "postgresql", "postgresql") == source


@pytest.mark.parametrize(
    ("source", "sqlite", "mysql"),
    [
        ("integer", "INTEGER", "INT"),
        ("bigint", "INTEGER", "BIGINT"),
        ("smallint", "INTEGER", "SMALLINT"),
        ("numeric(12,2)", "TEXT", "DECIMAL(12, 2)"),
        ("numeric(65,30)", "TEXT", "DECIMAL(65, 30)"),
        ("numeric(66,2)", "TEXT", "LONGTEXT"),  # past DECIMAL: every digit, as text
        ("numeric(1000,500)", "TEXT", "LONGTEXT"),
        ("numeric", "TEXT", "LONGTEXT"),  # any scale: DECIMAL would cut it
        ("timestamp with time zone", "TEXT", "DATETIME(6)"),
        ("timestamp(3) without time zone", "TEXT", "DATETIME(3)"),
        ("time without time zone", "TEXT", "TIME(6)"),
        ("date", "TEXT", "DATE"),
        ("boolean", "BOOLEAN", "BOOLEAN"),
        ("jsonb", "TEXT", "JSON"),  # SQLite: JSON's NUMERIC affinity would make 2.50 2.5
        ("bytea", "BLOB", "LONGBLOB"),
        ("text", "TEXT", "LONGTEXT"),
        ("character varying(80)", "TEXT", "VARCHAR(80)"),
        ("character varying(20000)", "TEXT", "LONGTEXT"),
        ("uuid", "TEXT", "CHAR(36)"),
        ("double precision", "REAL", "DOUBLE"),
    ],
)
def test_the_type_table_for_sqlite_and_mariadb(source: str, sqlite: str, mysql: str) -> None:
    assert target_type(source, "postgresql", "sqlite") == sqlite
    assert target_type(source, "postgresql", "mysql") == mysql


def test_mariadb_key_columns_of_text_fit_innodbs_index() -> None:
    assert target_type("text", "postgresql", "mysql", key_columns=1) == "VARCHAR(768)"
    assert target_type("text", "postgresql", "mysql", key_columns=2) == "VARCHAR(384)"
    assert target_type("numeric", "postgresql", "mysql", key_columns=1) == "VARCHAR(768)"
    assert target_type("bytea", "postgresql", "mysql", key_columns=1) == "VARBINARY(3072)"


@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        ("integer[]", "mysql", "no array type"),
        ("mood", "postgresql", "not a built-in"),
        ("hstore", "sqlite", "does not know"),
        ("integer; DROP TABLE t", "postgresql", "not a built-in"),
        ('text" ); DROP TABLE t; --', "postgresql", "not a built-in"),
        ("numeric(12,2) DEFAULT 1", "postgresql", "not a built-in"),
    ],
)
def test_a_type_with_no_safe_target_says_why(source: str, target: str, says: str) -> None:
    with pytest.raises(NoSafeType, match=says):
        target_type(source, "postgresql", target)


@pytest.mark.parametrize(
    ("value", "postgresql", "sqlite", "mysql"),
    [
        (1, "bigint", "INTEGER", "BIGINT"),
        (2**70, "numeric", "TEXT", "LONGTEXT"),
        (True, "boolean", "BOOLEAN", "BOOLEAN"),
        (__import__("decimal").Decimal("1.50"), "numeric", "TEXT", "LONGTEXT"),
        ({"a": 1}, "jsonb", "TEXT", "JSON"),
        ([1], "jsonb", "TEXT", "JSON"),
        ("2024-01-01", "text", "TEXT", "LONGTEXT"),
        (None, "text", "TEXT", "LONGTEXT"),
    ],
)
def test_a_value_without_a_declared_type_gets_a_safe_one(
    value: Any, postgresql: str, sqlite: str, mysql: str
) -> None:
    assert [json_type(value, d) for d in ("postgresql", "sqlite", "mysql")] == [
        postgresql,
        sqlite,
        mysql,
    ]


def test_sqlite_and_mariadb_sources_map_by_their_own_words() -> None:
    assert target_type("VARCHAR(10)", "sqlite", "postgresql") == "text"
    assert target_type("", "sqlite", "postgresql") == "text"  # no declared type
    assert target_type("DECIMAL(10, 2)", "sqlite", "postgresql") == "numeric(10,2)"
    assert target_type("BLOB", "sqlite", "mysql") == "LONGBLOB"
    assert target_type("INTEGER(11)", "mysql", "postgresql") == "integer"
    assert target_type("DATETIME(6)", "mysql", "postgresql") == "timestamp without time zone"


@pytest.mark.parametrize(
    ("dialect", "wanted", "present", "same"),
    [
        ("mysql", "INT", "int(11)", True),
        ("mysql", "BOOLEAN", "tinyint(1)", True),
        ("mysql", "JSON", "longtext", True),
        ("mysql", "DECIMAL(12, 2)", "decimal(12,2)", True),
        ("mysql", "DECIMAL(12, 2)", "decimal(12,3)", False),
        ("mysql", "BIGINT", "int(11)", False),
        ("postgresql", "numeric(12,2)", "numeric(12,2)", True),
        ("postgresql", "timestamp with time zone", "timestamp without time zone", False),
        ("sqlite", "TEXT", "TEXT", True),
        ("sqlite", "TEXT", "INTEGER", False),
    ],
)
def test_type_comparison_per_dialect(dialect: str, wanted: str, present: str, same: bool) -> None:
    assert same_type(dialect, wanted, present) is same


def test_debezium_schemas_declare_types_by_logical_name() -> None:
    field = [
        {"field": "id", "type": "int32"},
        {"field": "price", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "2", "connect.decimal.precision": "12"}},
        {"field": "at", "type": "string", "name": "io.debezium.time.ZonedTimestamp"},
        {"field": "doc", "type": "string", "name": "io.debezium.data.Json"},
        {"field": "odd", "type": "nonsense"},
    ]  # fmt: skip
    raw = {"schema": {"fields": [{"field": "after", "type": "struct", "fields": field}]}}
    assert declared_types(raw) == {
        "id": "integer",
        "price": "numeric(12,2)",
        "at": "timestamp with time zone",
        "doc": "jsonb",
    }
    assert declared_types({"op": "c"}) == {}
    assert declared_types({"schema": {"fields": "x"}}) == {}


# --- the wanted table -------------------------------------------------------------------------

SOURCE = SourceTable(
    "postgresql",
    "public",
    "customers",
    (
        SourceColumn("id", "integer", False),
        SourceColumn("name", "character varying(80)", True),
        SourceColumn("email", "text", True),
        SourceColumn("signup", "text", True),
        SourceColumn("price", "numeric(12,2)", True),
        SourceColumn("tags", "text[]", True),
    ),
    ("id",),
)


def test_a_mapping_shapes_its_target_columns(tmp_path: Path) -> None:
    mapping = load_one(
        tmp_path,
        item(
            GOOD_BODY
            + """
columns:
  id: customer_id
  name: {column: full_name, transform: [trim, upper]}
  email: {column: email_hash, transform: sha256}
  signup: {column: signed_up_on, type: date}
  price: {column: price, type: numeric}
set:
  region: EU
  at: {from: position}
  when: {from: commit_time}
on_delete: {soft: deleted_at}
"""
        ),
    )
    for dialect, expected in {
        "postgresql": [
            "integer", "character varying(80)", "text", "date", "numeric(12,2)", "text",
            "bigint", "timestamp with time zone", "timestamp with time zone",
        ],
        "mysql": [
            "INT", "VARCHAR(80)", "LONGTEXT", "DATE", "DECIMAL(12, 2)", "LONGTEXT", "BIGINT",
            "DATETIME(6)", "DATETIME(6)",
        ],
    }.items():  # fmt: skip
        columns, found = mapping_columns(mapping, SOURCE, dialect)
        assert found == []
        assert [c.name for c in columns] == [
            "customer_id", "full_name", "email_hash", "signed_up_on", "price", "region", "at",
            "when", "deleted_at",
        ]  # fmt: skip
        assert [c.type for c in columns] == expected
        assert [c.name for c in columns if c.key] == ["customer_id"]


def test_a_mirror_with_a_type_no_target_holds_says_to_exclude_it(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY))
    _columns, found = mapping_columns(mapping, SOURCE, "mysql")
    assert len(found) == 1 and "column tags (text[])" in found[0]
    assert "exclude: [tags]" in found[0]
    excluded = load_one(tmp_path, item(GOOD_BODY + "exclude: [tags]\n"))
    columns, found = mapping_columns(excluded, SOURCE, "mysql")
    assert found == [] and "tags" not in [c.name for c in columns]


def test_a_mapping_naming_columns_the_source_lacks_says_so(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY + "columns: {id: id, nope: x}\n"))
    _columns, found = mapping_columns(mapping, SOURCE, "postgresql")
    assert found and "columns.nope is not a column of public.customers" in found[0]


# --- on_new_column in mapping files -----------------------------------------------------------


def test_on_new_column_defaults_to_add_for_a_mirror_and_ignore_for_a_list(
    tmp_path: Path,
) -> None:
    mirror = load_one(tmp_path, item(GOOD_BODY))
    assert (mirror.on_new_column, mirror.on_new_column_given) == ("add", False)
    listed = load_one(tmp_path, item(GOOD_BODY + "columns: {id: id}\n"))
    assert listed.on_new_column == "dead-letter"  # as before: a listed column the target lost
    ignoring = load_one(tmp_path, item(GOOD_BODY + "columns: {id: id}\non_new_column: ignore\n"))
    assert ignoring.on_new_column == "ignore"
    written = load_one(tmp_path, item(GOOD_BODY + "on_new_column: dead-letter\n"))
    assert (written.on_new_column, written.on_new_column_given) == ("dead-letter", True)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("on_new_column: ad", "expected add, ignore or dead-letter; did you mean 'add'?"),
        ("on_new_column: [add]", "expected add, ignore or dead-letter"),
        ("on_new_column: 1", "expected add, ignore or dead-letter"),
    ],
)
def test_a_bad_on_new_column_names_its_line(tmp_path: Path, line: str, says: str) -> None:
    [found] = problems(tmp_path, ("crm.yaml", item(GOOD_BODY + line + "\n")))
    assert found.startswith("crm.yaml:6: mapping 'customers': on_new_column: ")
    assert says in found


def test_on_new_column_add_with_a_columns_list_is_refused(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns: {id: id}\non_new_column: add\n"
    [found] = problems(tmp_path, ("crm.yaml", item(body)))
    assert found.startswith("crm.yaml:7: mapping 'customers': on_new_column: 'add' goes with")
    assert "list a new column there" in found


# --- on_new_column in routing -----------------------------------------------------------------


def mapping_with(tmp_path: Path, extra: str = "") -> Mapping:
    return load_one(tmp_path, item(GOOD_BODY + extra))


def router(mapping: Mapping, dialect: str = "postgresql") -> Router:
    limits = TargetLimits.reflected(dialect, [])
    return Router([mapping], lambda m: frozenset({"id", "name"}), lambda m: limits)


def event(after: dict[str, Any], types: dict[str, str] | None = None) -> ChangeEvent:
    source: dict[str, Any] = {"name": "crm", "schema": "public", "table": "customers", "seq": 5}
    if types is not None:
        source["types"] = types
    return decode_event({"op": "c", "after": after, "source": source})


def test_a_declared_new_column_is_marked_for_the_applier(tmp_path: Path) -> None:
    [change] = router(mapping_with(tmp_path)).changes_for(
        event({"id": 1, "name": "a", "price": "1.50"}, {"id": "integer", "price": "numeric(8,2)"})
    )
    assert change.row == {"id": 1, "name": "a", "price": "1.50"}
    assert change.new_columns == {"price": NewColumn("numeric(8,2)", "postgresql", "1.50")}


def test_an_undeclared_new_column_is_added_only_when_the_mapping_says_add(
    tmp_path: Path,
) -> None:
    published = event({"id": 1, "price": 2})
    with pytest.raises(MappingApplyError, match=r"has no column price.*declares its type"):
        router(mapping_with(tmp_path)).changes_for(published)
    [change] = router(mapping_with(tmp_path, "on_new_column: add\n")).changes_for(published)
    assert change.new_columns == {"price": NewColumn(None, "postgresql", 2)}


def test_ignore_leaves_new_columns_out_and_dead_letter_refuses_them(tmp_path: Path) -> None:
    carrying = event({"id": 1, "name": None, "price": 2}, {"price": "integer"})
    [change] = router(mapping_with(tmp_path, "on_new_column: ignore\n")).changes_for(carrying)
    assert (change.row, change.new_columns) == ({"id": 1, "name": None}, None)
    dead = router(mapping_with(tmp_path, "on_new_column: dead-letter\n"))
    with pytest.raises(MappingApplyError, match=r"has no column price.*it is dead-letter"):
        dead.changes_for(carrying)


def test_a_new_column_name_the_target_cannot_hold_is_dead_lettered(tmp_path: Path) -> None:
    long_name = "é" * 40  # 80 bytes: PostgreSQL would cut it to 63
    carrying = event({"id": 1, long_name: 1}, {long_name: "integer"})
    with pytest.raises(MappingApplyError, match="longer than PostgreSQL's 63 bytes"):
        router(mapping_with(tmp_path, "on_new_column: add\n")).changes_for(carrying)


def test_source_types_that_are_not_an_object_of_texts_are_a_decode_error() -> None:
    from syncd.errors import DecodeError

    for bad in ([1], {"a": 1}, "integer"):
        with pytest.raises(DecodeError, match=r"source\.types"):
            event({"id": 1}, bad)  # type: ignore[arg-type]


def test_a_batch_asks_for_each_new_column_once_declared_type_first(tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, "on_new_column: add\n")
    r = router(mapping)
    changes: list[Change] = []
    changes += r.changes_for(event({"id": 1, "price": None}))
    changes += r.changes_for(event({"id": 2, "price": 5}))
    changes += r.changes_for(event({"id": 3, "price": 6}, {"price": "smallint"}))
    assert wanted_columns(changes) == {
        "dim_customer": {"price": NewColumn("smallint", "postgresql", 6)}
    }


def test_schema_changes_are_counted_for_the_metrics() -> None:
    from prometheus_client import generate_latest

    from syncd.apply.evolve import SchemaChanges
    from syncd.telemetry.metrics import Metrics

    changes = SchemaChanges()
    metrics = Metrics()
    metrics.schema_changes_from(changes.snapshot)
    changes.count("warehouse", "orders", "add_column")
    changes.count("warehouse", "orders", "add_column")
    text = generate_latest(metrics.registry).decode()
    assert (
        'syncd_schema_changes_total{change="add_column",database="warehouse",table="orders"} 2.0'
        in text
    )
