"""What data teams add to a mapping: where, transform chains, casts, exclude and set.

Read from YAML (every mistake with its file and line), and applied by the router: rows entering
and leaving the filter, the target row as it is written.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import MappingApplyError
from syncd.events import ChangeEvent
from syncd.mapping import ColumnMap, Mapping, SetColumn
from syncd.routing import Router
from tests.unit.test_mapping import GOOD_BODY, item, load_one, problems

# DESIGN.md's example mapping, as a data team writes it.
EU_CUSTOMERS = """
mappings:
  - name: eu_customers
    source: {system: crm, table: public.customers}
    target: {database: warehouse, table: eu_customer}
    key: [id]
    where: "country in ('DE', 'FR') and status <> 'closed'"
    columns:
      id: customer_id
      name: {column: full_name, transform: [trim, upper]}
      email: {column: email_hash, transform: sha256}
      signup: {column: signed_up_on, type: date}
    set:
      region: EU
      synced_from: {from: source_table}
      at: {from: position}
    on_delete: {soft: deleted_at}
"""


def event(op: str, after: dict[str, Any] | None, seq: int, before: Any = None) -> ChangeEvent:
    return ChangeEvent(
        op, before, after, "crm", "public", "customers", seq, f"e{seq}", 1_706_702_400_000, None
    )


def test_the_design_example_reads_every_option(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    assert mapping.where is not None and mapping.where.columns == {"country", "status"}
    assert mapping.columns == (
        ColumnMap("id", "customer_id"),
        ColumnMap("name", "full_name", ("trim", "upper")),
        ColumnMap("email", "email_hash", ("sha256",)),
        ColumnMap("signup", "signed_up_on", (), "date"),
    )
    assert mapping.set_columns == (
        SetColumn("region", constant="EU"),
        SetColumn("synced_from", metadata="source_table"),
        SetColumn("at", metadata="position"),
    )


def test_the_design_example_makes_the_target_row_it_promises(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    row = {
        "id": 7,
        "name": "  ana  ",
        "email": "ana@x.org",
        "signup": 19782,
        "country": "DE",
        "status": "open",
        "password_hash": "never",
    }
    [change] = Router([mapping]).changes_for(event("c", row, 10))
    assert not change.delete
    assert change.row == {
        "customer_id": 7,
        "full_name": "ANA",
        "email_hash": hashlib.sha256(b"ana@x.org").hexdigest(),
        "signed_up_on": "2024-02-29",
        "region": "EU",
        "synced_from": "public.customers",
        "at": 10,
    }


def test_a_row_leaving_the_filter_is_removed_as_on_delete_says(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    router = Router([mapping])
    closed = {"id": 7, "name": "a", "country": "DE", "status": "closed"}
    [change] = router.changes_for(event("u", closed, 11))
    assert change.delete and change.row is None and change.key == "[7]"
    moved = {"id": 7, "name": "a", "country": "US", "status": "open"}
    [change] = router.changes_for(event("u", moved, 12))
    assert change.delete


def test_a_delete_passes_the_filter_whatever_its_before_image_holds(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    [change] = Router([mapping]).changes_for(event("d", None, 13, before={"id": 7}))
    assert change.delete and change.target_key == {"customer_id": 7}


def test_a_row_lacking_a_filtered_column_names_it(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    with pytest.raises(MappingApplyError, match="eu_customers': the row has no column status"):
        Router([mapping]).changes_for(event("u", {"id": 7, "country": "DE"}, 14))


def test_a_value_that_cannot_be_cast_names_the_column_and_its_type(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    row = {"id": 7, "signup": "yesterday", "country": "FR", "status": "open"}
    with pytest.raises(MappingApplyError) as caught:
        Router([mapping]).changes_for(event("c", row, 15))
    assert str(caught.value).startswith(
        "mapping 'eu_customers': column signup: cannot cast the text 'yesterday' to date"
    )


def test_a_key_change_out_of_the_filter_deletes_both_keys(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    before = {"id": 7, "country": "DE", "status": "open"}
    after = {"id": 8, "country": "US", "status": "open"}
    old, new = Router([mapping]).changes_for(event("u", after, 16, before=before))
    assert (old.key, old.delete, new.key, new.delete) == ("[7]", True, "[8]", True)


def test_exclude_keeps_every_column_but_those(tmp_path: Path) -> None:
    mapping = load_one(
        tmp_path,
        item(GOOD_BODY + "exclude: [password_hash, ssn]\nset: {src: {from: source_system}}\n"),
    )
    row = {"id": 1, "name": "a", "password_hash": "x", "ssn": "y"}
    [change] = Router([mapping]).changes_for(event("c", row, 1))
    assert change.row == {"id": 1, "name": "a", "src": "crm"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("source_system", "crm"),
        ("source_table", "public.customers"),
        ("position", 42),
        ("op", "u"),
        ("commit_time", "2024-01-31 12:00:00+00:00"),
    ],
)
def test_set_takes_event_metadata(tmp_path: Path, source: str, expected: Any) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY + f"set: {{m: {{from: {source}}}}}\n"))
    [change] = Router([mapping]).changes_for(event("u", {"id": 1}, 42))
    assert change.row == {"id": 1, "m": expected}


def test_set_constants_keep_their_yaml_types(tmp_path: Path) -> None:
    body = GOOD_BODY + "set: {a: EU, b: 3, c: 2.5, d: true, e: null, f: 'Zürich 🏔'}\n"
    mapping = load_one(tmp_path, item(body))
    [change] = Router([mapping]).changes_for(event("c", {"id": 1}, 1))
    assert change.row == {
        "id": 1,
        "a": "EU",
        "b": 3,
        "c": 2.5,
        "d": True,
        "e": None,
        "f": "Zürich 🏔",
    }


def test_a_filter_compares_exact_numbers(tmp_path: Path) -> None:
    body = GOOD_BODY + 'where: "amount > 12345678901234567890.1234567890"\n'
    mapping = load_one(tmp_path, item(body))
    router = Router([mapping])
    above = {"id": 1, "amount": Decimal("12345678901234567890.1234567891")}
    equal = {"id": 1, "amount": Decimal("12345678901234567890.1234567890")}
    assert not router.changes_for(event("c", above, 1))[0].delete
    assert router.changes_for(event("c", equal, 2))[0].delete


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            "where: \"country = 'DE' and\"\n",
            "crm.yaml:6: mapping 'customers': where: at character 19 of \"country = 'DE' and\": "
            "expected a column, a 'text', a number, true, false, null or '(', found the end",
        ),
        (
            "where: 42\n",
            "crm.yaml:6: mapping 'customers': where: expected a filter such as",
        ),
        (
            "columns: {id: {transform: [trim, sha265]}}\n",
            "crm.yaml:6: mapping 'customers': columns.id.transform: unknown transform 'sha265'; "
            "did you mean 'sha256'?",
        ),
        (
            "columns: {id: {type: integer}}\n",
            "crm.yaml:6: mapping 'customers': columns.id.type: unknown type 'integer'; did you "
            "mean 'int'? (known: text, int, bigint, numeric, float, bool, date, timestamp, json)",
        ),
        (
            "columns: {id: x}\nexclude: [a]\n",
            "crm.yaml:7: mapping 'customers': exclude: goes with 'columns' left out",
        ),
        (
            "exclude: [id]\n",
            "crm.yaml:6: mapping 'customers': exclude: 'id' is a key column",
        ),
        (
            "set: {id: 1}\n",
            "crm.yaml:6: mapping 'customers': set.id: 'id' is a key column",
        ),
        (
            "set: {at: {from: positon}}\n",
            "crm.yaml:6: mapping 'customers': set.at.from: expected one of source_system, "
            "source_table, position, op, commit_time; did you mean 'position'?",
        ),
        (
            "set: {at: [1, 2]}\n",
            "crm.yaml:6: mapping 'customers': set.at: expected a constant, found a list",
        ),
        (
            "on_delete: {soft: gone}\nset: {gone: x}\n",
            "crm.yaml:7: mapping 'customers': set.gone: 'gone' is the soft-delete column",
        ),
    ],
)
def test_mistakes_in_the_new_options_name_file_line_and_fix(
    tmp_path: Path, body: str, says: str
) -> None:
    found = problems(tmp_path, ("crm.yaml", item(GOOD_BODY + body)))
    assert any(p.startswith(says) for p in found), found


def test_a_mapping_without_options_is_as_before(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, item(GOOD_BODY))
    assert (mapping.where, mapping.exclude, mapping.set_columns) == (None, frozenset(), ())
    assert isinstance(mapping, Mapping)


def test_a_value_that_cannot_be_cast_dead_letters_also_a_filtered_row(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, EU_CUSTOMERS)
    row = {"id": 7, "signup": "yesterday", "country": "US", "status": "open"}
    with pytest.raises(MappingApplyError, match="column signup: cannot cast the text"):
        Router([mapping]).changes_for(event("u", row, 17))
