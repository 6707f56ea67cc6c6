"""The outbox's SQL text, without a database: names, quoting, ownership of triggers, locks."""

from __future__ import annotations

import pytest

from syncd.capture.outbox_ddl import (
    MysqlOutbox,
    PostgresOutbox,
    SourceTable,
    SqliteOutbox,
    advisory_lock_key,
    check_source_name,
    outbox_sql,
)
from syncd.errors import CaptureError

CUSTOMERS = SourceTable("main", "customers", ("id",), ("id", "name", "photo"), frozenset({"photo"}))


@pytest.mark.parametrize("name", ["crm", "crm_eu", "a1"])
def test_plain_source_names_are_accepted(name: str) -> None:
    check_source_name(name)


@pytest.mark.parametrize("name", ["CRM", "crm-eu", "1crm", "", "crm;drop"])
def test_source_names_that_cannot_name_a_trigger_are_refused(name: str) -> None:
    with pytest.raises(CaptureError, match="lowercase letters, digits and _"):
        check_source_name(name)


def test_advisory_lock_key_is_stable_signed_64_bit_and_per_source() -> None:
    assert advisory_lock_key("crm") == advisory_lock_key("crm")
    assert advisory_lock_key("crm") != advisory_lock_key("erp")
    assert -(2**63) <= advisory_lock_key("crm") < 2**63


def test_unqualified_tables_land_in_the_default_schema() -> None:
    assert outbox_sql("postgresql", "public").table_of("customers") == ("public", "customers")
    assert outbox_sql("postgresql", "public").table_of("crm.customers") == ("crm", "customers")
    assert outbox_sql("sqlite", "main").table_of("customers") == ("main", "customers")
    assert outbox_sql("mariadb", "shop").table_of("customers") == ("shop", "customers")


def test_unsupported_backend_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match="not oracle"):
        outbox_sql("oracle", "x")


def test_sqlite_triggers_list_every_column_and_carry_blobs_as_hex() -> None:
    statements = SqliteOutbox("main").capture_triggers("crm", CUSTOMERS)
    creates = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert [s.split()[2] for s in creates] == [
        "syncd_crm_customers_ins",
        "syncd_crm_customers_upd",
        "syncd_crm_customers_del",
    ]
    insert, update, delete = creates
    assert "json_object('id', " in insert and "'name', " in insert and "'photo', " in insert
    assert "'c', json_array(CASE typeof(NEW.id)" in insert
    assert "json_object('id', CASE typeof(OLD.id)" in update
    assert "'d', json_array(CASE typeof(OLD.id)" in delete and "NEW." not in delete
    assert "lower(hex(NEW.photo))" in insert


def test_mysql_literals_escape_backslashes_and_quotes() -> None:
    assert MysqlOutbox("shop").literal("it's a \\ path") == "'it''s a \\\\ path'"
    assert SqliteOutbox("main").literal("it's a \\ path") == "'it''s a \\ path'"


def test_mysql_hexes_only_binary_columns_and_quotes_reserved_words() -> None:
    table = SourceTable("shop", "orders", ("id",), ("id", "before", "blob"), frozenset({"blob"}))
    [_, _, _, insert, _, _] = MysqlOutbox("shop").capture_triggers("crm", table)
    assert "'before', NEW.`before`" in insert
    assert "CONCAT('\\\\x', LOWER(HEX(NEW.`blob`)))" in insert
    assert "'shop', 'orders', 'c'" in insert


def test_mysql_lock_names_keep_databases_apart_and_fit_64_characters() -> None:
    assert MysqlOutbox("shop").lock_name("crm") != MysqlOutbox("shop2").lock_name("crm")
    assert len(MysqlOutbox("d" * 64).lock_name("crm")) <= 64


def test_postgres_passes_key_columns_to_one_function_per_source() -> None:
    table = SourceTable("sales", "Order Lines", ("order_id", "line"))
    drop, create = PostgresOutbox("public").capture_triggers("crm", table)
    assert drop == 'DROP TRIGGER IF EXISTS syncd_crm_capture ON sales."Order Lines"'
    assert create.endswith("EXECUTE FUNCTION public.syncd_crm_capture('order_id', 'line')")


def test_row_triggers_belong_to_the_source_named_for_their_own_table() -> None:
    sql = SqliteOutbox("main")
    # Source "a" on table "b_c" and source "a_b" on table "c" would share a trigger name.
    installed = [("syncd_a_b_c_ins", "b_c"), ("syncd_a_b_c_upd", "b_c"), ("other", "t")]
    assert sql.captured_tables(installed, "a") == {("main", "b_c")}
    assert sql.captured_tables(installed, "a_b") == set()
    assert sql.other_sources_installed(installed, "a_b")
    assert not sql.other_sources_installed(installed, "a")
    with pytest.raises(CaptureError, match="another source's"):
        sql.check_collisions(installed, "a_b", SourceTable("main", "c", ("id",), ("id",)))


def test_postgres_sources_are_told_apart_by_their_function() -> None:
    sql = PostgresOutbox("public")
    installed = [
        ("syncd_crm_capture", "public", "customers"),
        ("syncd_erp_capture", None, None),  # installed with no tables (write_event only)
    ]
    assert sql.captured_tables(installed, "crm") == {("public", "customers")}
    assert sql.other_sources_installed(installed, "crm")
    assert not sql.other_sources_installed(installed[:1], "crm")


def test_names_too_long_for_the_dialect_are_refused_at_install() -> None:
    table = SourceTable("shop", "t" * 60, ("id",), ("id",))
    with pytest.raises(CaptureError, match="longer than mysql allows"):
        MysqlOutbox("shop").capture_triggers("crm", table)
    # ... but uninstall can still name (and so drop) what it finds.
    assert MysqlOutbox("shop").drop_triggers("crm", "shop", "t" * 60)


def test_relay_lock_statements_wait_as_long_as_asked() -> None:
    assert "SET LOCAL lock_timeout = '250ms'" in PostgresOutbox("public").lock("crm", 0.25)
    assert PostgresOutbox("public").lock("crm", 0)[1] == "SET LOCAL lock_timeout = '1ms'"
    assert SqliteOutbox("main").lock("crm", 0.25) == [
        "PRAGMA busy_timeout = 250",
        "BEGIN IMMEDIATE",
    ]
    [get_lock] = MysqlOutbox("shop").lock("crm", 0.25)
    assert get_lock == "SELECT GET_LOCK('syncd_outbox_shop_crm', 0.250)"
    assert MysqlOutbox("shop").lock_obtained(1) and not MysqlOutbox("shop").lock_obtained(0)
    assert not MysqlOutbox("shop").lock_obtained(None)
