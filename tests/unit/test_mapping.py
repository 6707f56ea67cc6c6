"""Mapping files: loading, every error message, and turning source rows into target rows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncd.errors import ConfigError, MappingApplyError
from syncd.mapping import TRANSFORMS, ColumnMap, Mapping, OnDelete, load_mappings
from syncd.mapping.transforms import apply_transforms

DATABASES = ("warehouse", "archive")

CUSTOMERS = """
mappings:
  - name: customers
    source: {system: crm, table: public.customers}
    target: {database: warehouse, table: dim_customer}
    key: [id]
    columns:
      id: customer_id
      name: full_name
      email: {column: email, transform: lower}
      nick: {transform: trim}
      country:
    on_delete: delete
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_one(tmp_path: Path, text: str) -> Mapping:
    write(tmp_path, "crm.yaml", text)
    [mapping] = load_mappings(tmp_path, DATABASES)
    return mapping


def problems(tmp_path: Path, *files: tuple[str, str]) -> list[str]:
    """Write the files, load them, and return the problems with the tmp_path prefix cut."""
    for name, text in files:
        write(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path, DATABASES)
    return [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems]


def item(body: str, name: str = "customers") -> str:
    """A one-mapping file whose item has `name` on line 2 and `body` from line 3 on."""
    indented = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"mappings:\n  - name: {name}\n{indented}\n"


GOOD_BODY = """
source: {system: crm, table: public.customers}
target: {database: warehouse, table: dim_customer}
key: [id]
"""


# --- the good path --------------------------------------------------------------------------------


def test_good_mapping_round_trips_every_field(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, CUSTOMERS)

    assert mapping == Mapping(
        name="customers",
        source_system="crm",
        source_table="public.customers",
        target_database="warehouse",
        target_table="dim_customer",
        key=("id",),
        columns=(
            ColumnMap("id", "customer_id"),
            ColumnMap("name", "full_name"),
            ColumnMap("email", "email", ("lower",)),
            ColumnMap("nick", "nick", ("trim",)),
            ColumnMap("country", "country"),
        ),
        on_delete=OnDelete("delete"),
        file=str(tmp_path / "crm.yaml"),
        line=2,
    )
    assert mapping.target_key == ("customer_id",)


def test_to_target_row_renames_transforms_and_leaves_out_unlisted_columns(
    tmp_path: Path,
) -> None:
    mapping = load_one(tmp_path, CUSTOMERS)
    row = {"id": 7, "name": "Ana", "email": "Ana@X.org", "nick": " an ", "secret": "s"}

    assert mapping.to_target_row(row) == {
        "customer_id": 7,
        "full_name": "Ana",
        "email": "ana@x.org",
        "nick": "an",
    }
    assert mapping.key_of(row) == (7,)


def test_to_target_row_keeps_a_partial_row_partial(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, CUSTOMERS)

    assert mapping.to_target_row({"id": 7, "email": None}) == {"customer_id": 7, "email": None}


def test_without_columns_every_column_is_copied_as_it_is(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY))
    row = {"id": 1, "Name": "Ana"}

    assert mapping.columns is None
    assert mapping.target_key == ("id",)
    assert mapping.to_target_row(row) == row
    assert mapping.to_target_row(row) is not row


def test_key_may_be_a_single_string_and_several_columns(tmp_path: Path) -> None:
    single = load_one(tmp_path, item(GOOD_BODY.replace("key: [id]", "key: id")))
    write(tmp_path, "crm.yaml", item(GOOD_BODY.replace("key: [id]", "key: [tenant, id]")))
    [composite] = load_mappings(tmp_path, DATABASES)

    assert single.key == ("id",)
    assert composite.key == ("tenant", "id")
    assert composite.key_of({"id": 3, "tenant": "t1"}) == ("t1", 3)


def test_on_delete_defaults_to_delete_and_accepts_ignore_and_soft(tmp_path: Path) -> None:
    default = load_one(tmp_path, item(GOOD_BODY))
    ignore = load_one(tmp_path, item(GOOD_BODY + "on_delete: ignore\n"))
    soft = load_one(tmp_path, item(GOOD_BODY + "on_delete: {soft: deleted_at}\n"))

    assert default.on_delete == OnDelete("delete")
    assert ignore.on_delete == OnDelete("ignore")
    assert soft.on_delete == OnDelete("soft", "deleted_at")


def test_fan_out_from_one_source_table_to_two_targets_is_allowed(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", item(GOOD_BODY, name="customers"))
    write(
        tmp_path,
        "b.yml",
        item(GOOD_BODY.replace("database: warehouse", "database: archive"), name="archive"),
    )

    mappings = load_mappings(tmp_path, DATABASES)

    assert [m.name for m in mappings] == ["customers", "archive"]
    assert {m.source_table for m in mappings} == {"public.customers"}


def test_files_load_in_name_order_and_dotfiles_and_other_suffixes_are_skipped(
    tmp_path: Path,
) -> None:
    write(tmp_path, "b.yaml", item(GOOD_BODY, name="second"))
    write(tmp_path, "a.yml", item(GOOD_BODY, name="first"))
    write(tmp_path, ".#a.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "not: [valid")

    assert [m.name for m in load_mappings(tmp_path, DATABASES)] == ["first", "second"]


def test_qualified_source_table_matches_only_its_schema(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY))

    assert mapping.matches("public", "customers")
    assert not mapping.matches("sales", "customers")
    assert not mapping.matches(None, "customers")
    assert not mapping.matches("public", "orders")


def test_unqualified_source_table_matches_any_schema(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY.replace("public.customers", "customers")))

    assert mapping.matches("public", "customers")
    assert mapping.matches(None, "customers")
    assert not mapping.matches("public", "orders")


# --- applying to rows -----------------------------------------------------------------------------


def test_key_of_names_the_mapping_and_the_missing_or_null_key_columns(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY.replace("key: [id]", "key: [tenant, id]")))

    with pytest.raises(MappingApplyError) as caught:
        mapping.key_of({"tenant": None, "name": "x"})

    assert str(caught.value) == (
        "mapping 'customers': the row has no value for key column(s) tenant, id"
    )


def test_transform_of_a_non_string_names_the_mapping_column_and_type(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, CUSTOMERS)

    with pytest.raises(MappingApplyError) as caught:
        mapping.to_target_row({"id": 1, "email": 42})

    assert str(caught.value) == (
        "mapping 'customers': column email: transform 'lower' needs text, found the number 42"
    )


def test_transforms_pass_null_through_unchanged() -> None:
    assert {name: apply_transforms([name], None) for name in TRANSFORMS} == {
        name: None for name in ("lower", "upper", "trim", "sha256", "mask", "nullif_empty")
    }
    assert apply_transforms(["upper"], "ab") == "AB"


# --- file and directory problems ------------------------------------------------------------------


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path / "mappings", DATABASES)

    assert str(caught.value) == (
        f"{tmp_path}/mappings: mapping directory does not exist; "
        f"create it and write one like {tmp_path}/mappings/crm.yaml"
    )


def test_empty_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path, DATABASES)

    assert str(caught.value) == (
        f"{tmp_path}: no mapping files in {tmp_path}; write one like {tmp_path}/crm.yaml"
    )


def test_files_without_any_mapping_are_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, ("crm.yaml", "mappings: []\n")) == [
        f"{tmp_path}: the mapping files define no mappings; add one under their 'mappings:' list"
    ]


def test_file_without_a_mappings_list_is_not_a_mapping_file(tmp_path: Path) -> None:
    found = problems(tmp_path, ("crm.yaml", "mapping:\n  - name: x\n"))

    assert found[0] == (
        "crm.yaml:1: mapping: unknown key; did you mean 'mappings'? (allowed: mappings)"
    )
    assert found[1].startswith(
        "crm.yaml:1: not a mapping file: it needs a top-level 'mappings:' list, like mappings: "
    )


def test_mappings_that_is_not_a_list_is_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, ("crm.yaml", "mappings: {name: x}\n")) == [
        "crm.yaml:1: mappings: expected a list of mappings (each item starting with '- name:'), "
        "found a mapping"
    ]


def test_list_item_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, ("crm.yaml", "mappings:\n  - customers\n"))

    assert len(found) == 1
    assert found[0].startswith("crm.yaml:2: mappings[0]: expected a mapping like {name: ")
    assert found[0].endswith("found 'customers'")


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    found = problems(tmp_path, ("crm.yaml", "mappings:\n  - name: [x\n    key: y\n"))

    assert len(found) == 1
    assert found[0].startswith("crm.yaml:3: not valid YAML: ")


def test_duplicate_key_in_a_mapping_item_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, ("crm.yaml", item(GOOD_BODY + "key: [other]\n")))

    assert found == [
        "crm.yaml:6: mappings[0].key: duplicate key, also set at line 5; "
        "YAML would silently keep only the last one, so remove one of them"
    ]


def test_errors_in_two_files_are_reported_together(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        ("a.yaml", item(GOOD_BODY.replace("key: [id]", "key: []"), name="one")),
        ("b.yaml", "mappings:\n  - name: [x\n"),
    )

    assert [line.split(": ")[0] for line in found] == ["a.yaml:5", "b.yaml:3"]


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        ("a.yaml", item(GOOD_BODY)),
        ("b.yaml", "# the same name again\n" + item(GOOD_BODY)),
    )

    assert found == [
        "b.yaml:3: mapping 'customers': the name is already used at a.yaml:2; "
        "give each mapping its own name"
    ]


# --- item problems --------------------------------------------------------------------------------


def test_unknown_item_key_suggests_the_close_name(tmp_path: Path) -> None:
    found = problems(tmp_path, ("crm.yaml", item(GOOD_BODY + "colums: {id: id}\n")))

    assert found == [
        "crm.yaml:6: mapping 'customers': colums: unknown key; did you mean 'columns'? "
        "(allowed: name, source, target, key, columns, on_delete, where, exclude, set, "
        "on_new_column)"
    ]


def test_unknown_source_key_suggests_the_close_name(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("system: crm", "system: crm, tabel: x")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:3: mapping 'customers': source.tabel: unknown key; did you mean 'table'? "
        "(allowed: system, table)"
    ]


def test_missing_name_is_reported(tmp_path: Path) -> None:
    text = "mappings:\n  - " + textwrap.indent(GOOD_BODY.strip(), "    ").lstrip() + "\n"

    assert problems(tmp_path, ("crm.yaml", text)) == [
        "crm.yaml:2: mappings[0]: name: missing; write name: customers (unique, it shows in "
        "logs, metrics and dead letters)"
    ]


def test_empty_name_is_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, ("crm.yaml", item(GOOD_BODY, name="''"))) == [
        "crm.yaml:2: mappings[0]: name: expected a non-empty name such as customers, found ''"
    ]


def test_missing_source_and_target_are_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, ("crm.yaml", item("key: [id]\n"))) == [
        "crm.yaml:2: mapping 'customers': source: missing; write source: {system: ..., table: ...}",
        "crm.yaml:2: mapping 'customers': target: missing; write target: "
        "{database: ..., table: ...}",
    ]


def test_missing_source_system_and_target_table_are_reported(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("system: crm, ", "").replace(", table: dim_customer", "")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:3: mapping 'customers': source.system: missing; write system: crm",
        "crm.yaml:4: mapping 'customers': target.table: missing; write table: dim_customer",
    ]


def test_source_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("{system: crm, table: public.customers}", "crm.customers")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:3: mapping 'customers': source: expected {system: ..., table: ...}, "
        "found 'crm.customers'"
    ]


def test_table_with_too_many_dots_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("public.customers", "db.public.customers")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:3: mapping 'customers': source.table: expected 'table' or 'schema.table', "
        "found 'db.public.customers'"
    ]


def test_unknown_target_database_lists_the_configured_ones(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("database: warehouse", "database: warehose")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:4: mapping 'customers': target.database: unknown database 'warehose'; "
        "did you mean 'warehouse'? (configured databases: archive, warehouse)"
    ]


def test_missing_key_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("key: [id]", "")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:2: mapping 'customers': key: missing; write the source columns that "
        "identify a row, such as key: [id]"
    ]


def test_empty_key_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("key: [id]", "key: []")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:5: mapping 'customers': key: expected a list of the source columns that "
        "identify a row, such as [id], found an empty list"
    ]


def test_key_that_is_not_a_list_of_names_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY.replace("key: [id]", "key: [id, 5, id]")

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:5: mapping 'customers': key: expected a column name, found 5",
        "crm.yaml:5: mapping 'customers': key: 'id' is listed twice; list it once",
    ]


def test_key_column_missing_from_columns_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns:\n  name: full_name\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:6: mapping 'customers': columns: key column 'id' is not listed; "
        "add 'id: <target column>' (or 'id:' to keep its name)"
    ]


def test_empty_columns_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, ("crm.yaml", item(GOOD_BODY + "columns: {}\n")))

    assert found == [
        "crm.yaml:6: mapping 'customers': columns: expected source: target pairs such as "
        "{id: customer_id}, or leave columns out to copy every column as it is, "
        "found an empty mapping"
    ]


def test_unknown_transform_suggests_the_close_name(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns:\n  id: id\n  email: {transform: lowr}\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:8: mapping 'customers': columns.email.transform: unknown transform 'lowr'; "
        "did you mean 'lower'? (known: lower, mask, nullif_empty, sha256, trim, upper)"
    ]


def test_unknown_column_spec_key_suggests_the_close_name(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns:\n  id: id\n  email: {colum: mail}\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:8: mapping 'customers': columns.email.colum: unknown key; "
        "did you mean 'column'? (allowed: column, transform, type)"
    ]


def test_column_entry_of_the_wrong_type_says_what_to_write(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns:\n  id: id\n  email: [mail]\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:8: mapping 'customers': columns.email: expected a target column name or "
        "{column: NAME, transform: T or [T, …], type: TYPE}, found a list"
    ]


def test_two_source_columns_for_one_target_column_are_reported(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns:\n  id: id\n  mail: email\n  email: {transform: lower}\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:9: mapping 'customers': columns.email: target column 'email' is already "
        "fed by 'mail'; each target column takes one source column"
    ]


def test_unknown_on_delete_lists_the_choices(tmp_path: Path) -> None:
    assert problems(tmp_path, ("crm.yaml", item(GOOD_BODY + "on_delete: remove\n"))) == [
        "crm.yaml:6: mapping 'customers': on_delete: expected delete, ignore or "
        "{soft: COLUMN}, found 'remove'"
    ]


def test_bare_soft_on_delete_asks_for_the_column(tmp_path: Path) -> None:
    assert problems(tmp_path, ("crm.yaml", item(GOOD_BODY + "on_delete: soft\n"))) == [
        "crm.yaml:6: mapping 'customers': on_delete: expected delete, ignore or "
        "{soft: COLUMN}, found 'soft'; write {soft: deleted_at} naming the column to set"
    ]


def test_unknown_key_beside_soft_suggests_the_close_name(tmp_path: Path) -> None:
    body = GOOD_BODY + "on_delete: {soft: deleted_at, sof: x}\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:6: mapping 'customers': on_delete.sof: unknown key; did you mean 'soft'? "
        "(allowed: soft)"
    ]


def test_soft_column_that_a_source_column_feeds_is_reported(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns: {id: id, removed: deleted_at}\non_delete: {soft: deleted_at}\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:7: mapping 'customers': on_delete.soft: 'deleted_at' is also the target of "
        "columns.removed; choose a column no source column feeds, such as deleted_at"
    ]


def test_soft_column_cannot_be_a_key(tmp_path: Path) -> None:
    body = GOOD_BODY + "columns: {id: customer_id}\non_delete: {soft: customer_id}\n"

    assert problems(tmp_path, ("crm.yaml", item(body))) == [
        "crm.yaml:7: mapping 'customers': on_delete.soft: 'customer_id' is a key column; "
        "choose a separate column such as deleted_at"
    ]


def test_every_mistake_in_an_item_is_reported(tmp_path: Path) -> None:
    body = """
    source: {system: crm, table: customers}
    target: {database: nowhere, table: t}
    key: []
    columns: {id: {transform: nope}}
    on_delete: erase
    """

    found = problems(tmp_path, ("crm.yaml", item(body)))

    assert [line.split(": ")[2] for line in found] == [
        "target.database",
        "key",
        "columns.id.transform",
        "on_delete",
    ]
