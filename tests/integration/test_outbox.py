"""Outbox capture against real databases (PostgreSQL, SQLite, MariaDB): triggers, relay, library."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from syncd.capture import CapturedBatch
from syncd.capture.outbox import OutboxCapture, install, uninstall, write_event
from syncd.errors import CaptureError, SourceUnavailable
from tests.services import MARIADB_URL, PostgresCluster, free_port, mariadb_database

# Portable to all three; MariaDB cannot key a TEXT column, hence VARCHAR.
SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(100), score NUMERIC(10, 2));
CREATE TABLE pairs (a INTEGER NOT NULL, b VARCHAR(100) NOT NULL, v VARCHAR(100),
                    PRIMARY KEY (a, b));
CREATE TABLE notes (body VARCHAR(100))
"""
_databases = itertools.count(1)


@dataclass
class Source:
    """A source database with the test tables; ``schema`` is what its events carry."""

    url: URL
    dialect: str
    schema: str
    engine: Engine

    def table(self, name: str) -> str:
        """A table as config.yaml would list it for this dialect."""
        return f"public.{name}" if self.dialect == "postgresql" else name

    def install(self, *tables: str, source: str = "crm") -> list[str]:
        return install(self.url, source, [self.table(t) for t in tables or ("customers", "pairs")])

    def write(self, *statements: str) -> None:
        """Run ``statements`` in one application transaction."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def outbox_ids(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.scalars(sa.text("SELECT id FROM syncd_outbox ORDER BY id")))

    def has_outbox(self) -> bool:
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table("syncd_outbox")

    def triggers(self) -> set[str]:
        """Every trigger in the database, as 'name on table'."""
        query = {
            "postgresql": "SELECT tgname, relname FROM pg_trigger t JOIN pg_class c "
            "ON c.oid = t.tgrelid WHERE NOT t.tgisinternal",
            "sqlite": "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'",
            "mariadb": "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE()",
        }[self.dialect]
        with self.engine.connect() as conn:
            return {f"{name} on {table}" for name, table in conn.exec_driver_sql(query)}


@pytest.fixture(params=["postgresql", "sqlite", "mariadb"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    """A fresh source database of each dialect, with tables customers, pairs and notes."""
    with empty_database(request, tmp_path) as (url, schema):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for statement in SCHEMA.split(";"):
                conn.exec_driver_sql(statement)
        yield Source(url, request.param, schema, engine)
        engine.dispose()


@pytest.fixture
def relays(source: Source) -> Iterator[Callable[..., OutboxCapture]]:
    """Makes relays of ``source`` (source name crm) and closes them after the test."""
    made: list[OutboxCapture] = []

    def relay(max_batch_events: int = 500) -> OutboxCapture:
        made.append(OutboxCapture(source.url, "crm", [source.table("customers")], max_batch_events))
        return made[-1]

    yield relay
    for relay_made in made:
        relay_made.close()


@contextmanager
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[URL, str]]:
    """An empty database of ``request.param``: its URL and the schema its events carry."""
    if request.param == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'source.db'}"), "main"
    elif request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        yield make_url(cluster.create_database(f"outbox_{next(_databases)}")), "public"
    else:
        # The pid keeps parallel or leftover runs' databases apart on the shared server.
        name = f"syncd_outbox_{os.getpid()}_{next(_databases)}"
        with mariadb_database(name) as url:
            yield make_url(url), name


def events_of(batch: CapturedBatch | None) -> list[dict[str, Any]]:
    assert batch is not None, "expected a batch of captured changes, the relay found none"
    return [captured.event for captured in batch.events]


def relay_all(relay: OutboxCapture) -> list[dict[str, Any]]:
    """One poll, confirmed: the events the relay published."""
    batch = relay.poll(5)
    events = events_of(batch)
    assert batch is not None
    relay.confirm(batch)
    return events


# ---------------------------------------------------------------------- install, uninstall


def test_install_twice_is_the_same_and_uninstall_removes_triggers_and_outbox(
    source: Source,
) -> None:
    first = source.install()
    triggers = source.triggers()
    assert any("customers" in t for t in triggers) and any("pairs" in t for t in triggers)
    assert source.install() == [line.replace("created outbox", "kept outbox") for line in first]
    assert source.triggers() == triggers

    lines = uninstall(source.url, "crm")
    assert "dropped outbox table syncd_outbox" in lines
    assert source.triggers() == set() and not source.has_outbox()
    source.write("INSERT INTO customers (id, name) VALUES (1, 'Ana')")  # writes carry on
    assert uninstall(source.url, "crm") == ["nothing of source crm was installed"]


def test_outbox_stays_while_another_source_still_captures(source: Source) -> None:
    source.install("customers")
    source.install("pairs", source="erp")
    assert "kept outbox table syncd_outbox: other sources still capture into it" in uninstall(
        source.url, "crm"
    )
    source.write(
        "INSERT INTO customers (id) VALUES (1)", "INSERT INTO pairs (a, b) VALUES (1, 'x')"
    )
    assert len(source.outbox_ids()) == 1  # erp's triggers work on, crm's are gone
    with pytest.raises(CaptureError, match="1 unpublished change"):
        uninstall(source.url, "erp")
    assert "dropped outbox table syncd_outbox" in uninstall(source.url, "erp", force=True)
    assert source.triggers() == set() and not source.has_outbox()


def test_reinstall_after_an_added_column_captures_it(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    source.write("ALTER TABLE customers ADD COLUMN email VARCHAR(100)")
    source.install()
    source.write("INSERT INTO customers (id, name, email) VALUES (1, 'Ana', 'a@x.org')")
    [event] = relay_all(relays())
    assert event["after"] == {"id": 1, "name": "Ana", "score": None, "email": "a@x.org"}


def test_reinstall_with_fewer_tables_drops_the_triggers_of_the_others(source: Source) -> None:
    source.install("customers", "pairs")
    lines = source.install("customers")
    assert any(line.startswith("dropped triggers on") and "pairs" in line for line in lines)
    assert not any("pairs" in trigger for trigger in source.triggers())


def test_table_without_primary_key_is_refused_with_what_to_do(source: Source) -> None:
    with pytest.raises(CaptureError, match=r"notes has no primary key: add one \(ALTER TABLE"):
        source.install("customers", "notes")
    with pytest.raises(CaptureError, match="nothere does not exist"):
        source.install("customers", "nothere")
    # The check comes first: nothing was installed.
    assert source.triggers() == set() and not source.has_outbox()


def test_uninstall_refuses_while_changes_wait_unless_forced(source: Source) -> None:
    source.install()
    source.write("INSERT INTO customers (id) VALUES (1)", "INSERT INTO customers (id) VALUES (2)")
    with pytest.raises(CaptureError, match=r"still holds 2 unpublished change.* --force"):
        uninstall(source.url, "crm")
    assert source.triggers() != set()  # refused means untouched
    lines = uninstall(source.url, "crm", force=True)
    assert "discarded 2 unpublished change(s) of source crm" in lines
    assert not source.has_outbox()


# ------------------------------------------------------------------------------ triggers


def test_transaction_of_several_statements_arrives_in_id_order(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    source.write(
        "INSERT INTO customers (id, name) VALUES (1, 'Ana')",
        "INSERT INTO customers (id, name) VALUES (2, 'Bo')",
        "UPDATE customers SET name = 'Ana L' WHERE id = 1",
        "DELETE FROM customers WHERE id = 2",
        "INSERT INTO pairs (a, b, v) VALUES (1, 'x', 'v1')",
    )
    batch = relays().poll(5)
    events = events_of(batch)
    assert [(e["op"], e["source"]["table"]) for e in events] == [
        ("c", "customers"),
        ("c", "customers"),
        ("u", "customers"),
        ("d", "customers"),
        ("c", "pairs"),
    ]
    seqs = [e["source"]["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[0] >= 1
    assert {e["source"]["name"] for e in events} == {"crm"}
    assert {e["source"]["schema"] for e in events} == {source.schema}
    tx_ids = {e["source"]["txId"] for e in events}
    assert len(tx_ids) == 1 and (None in tx_ids) == (source.dialect != "postgresql")
    assert all(abs(e["source"]["ts_ms"] - time.time() * 1000) < 60_000 for e in events)
    assert batch is not None
    assert [c.group for c in batch.events] == [
        f"{source.schema}.customers:[1]",
        f"{source.schema}.customers:[2]",
        f"{source.schema}.customers:[1]",
        f"{source.schema}.customers:[2]",
        f'{source.schema}.pairs:[1,"x"]',
    ]


def test_rolled_back_transaction_leaves_nothing_in_the_outbox(source: Source) -> None:
    source.install()
    with source.engine.connect() as conn, conn.begin() as transaction:
        conn.exec_driver_sql("INSERT INTO customers (id, name) VALUES (1, 'Ana')")
        conn.exec_driver_sql("INSERT INTO pairs (a, b) VALUES (1, 'x')")
        transaction.rollback()
    assert source.outbox_ids() == []


def test_update_delete_and_key_change_carry_before_and_after(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    source.write("INSERT INTO customers (id, name, score) VALUES (1, 'Ana', 12.5)")
    source.write("UPDATE customers SET score = 3 WHERE id = 1")
    source.write("UPDATE customers SET id = 10 WHERE id = 1")
    source.write("DELETE FROM customers WHERE id = 10")
    create, update, key_change, delete = relay_all(relays())

    # JSON-native values: numbers stay numbers, NULL is null.
    assert create["before"] is None
    assert create["after"] == {"id": 1, "name": "Ana", "score": 12.5}
    assert update["op"] == "u"
    assert update["before"] == {"id": 1, "name": "Ana", "score": 12.5}
    assert update["after"] == {"id": 1, "name": "Ana", "score": 3}
    # A key change is an update whose before and after differ in the key.
    assert key_change["op"] == "u"
    assert key_change["before"]["id"] == 1 and key_change["after"]["id"] == 10
    assert delete == {**delete, "op": "d", "before": {"id": 10, "name": "Ana", "score": 3}}
    assert delete["after"] is None


# ---------------------------------------------------------------------------- write_event


def test_write_event_is_relayed_like_a_captured_change_and_rolls_back_with_its_transaction(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    event = {
        "op": "u",
        "before": None,
        "after": {"a": 7, "b": "y", "v": "from the application"},
        "source": {"schema": source.schema, "table": "pairs"},
    }
    with source.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO customers (id, name) VALUES (1, 'Ana')")
        write_event(conn, "crm", event)
    with source.engine.connect() as conn, conn.begin() as transaction:
        write_event(conn, "crm", {**event, "after": {"a": 8, "b": "z"}})
        transaction.rollback()

    batch = relays().poll(5)
    captured, written = events_of(batch)
    assert batch is not None and batch.events[1].group == f'{source.schema}.pairs:[7,"y"]'
    assert written["op"] == "u" and written["after"] == event["after"]
    assert written["source"]["seq"] > captured["source"]["seq"]
    assert written["source"]["schema"] == source.schema and written["source"]["name"] == "crm"
    assert (written["source"]["txId"] is not None) == (source.dialect == "postgresql")


def test_write_event_without_the_outbox_says_to_install(source: Source) -> None:
    event = {"op": "d", "before": {"id": 1}, "after": None, "source": {"table": "customers"}}
    with (
        source.engine.begin() as conn,
        pytest.raises(CaptureError, match="syncd capture install -c CONFIG --source crm"),
    ):
        write_event(conn, "crm", event)


# ------------------------------------------------------------------------------ the relay


def test_confirm_deletes_exactly_the_published_rows(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    source.write(*(f"INSERT INTO customers (id) VALUES ({n})" for n in range(1, 6)))
    ids = source.outbox_ids()
    relay = relays(max_batch_events=2)

    batch = relay.poll(5)
    assert [e["source"]["seq"] for e in events_of(batch)] == ids[:2]
    assert batch is not None
    relay.confirm(batch)
    assert source.outbox_ids() == ids[2:]
    assert [e["after"]["id"] for e in relay_all(relay)] == [3, 4]
    assert source.outbox_ids() == ids[4:]


def test_batch_not_confirmed_is_sent_again_by_the_next_relay(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    source.write("INSERT INTO customers (id) VALUES (1)", "INSERT INTO customers (id) VALUES (2)")
    first = relays()
    published = events_of(first.poll(5))
    first.close()  # a crash between publishing and confirm, as far as the outbox can tell

    again = relay_all(relays())
    assert [e["source"]["seq"] for e in again] == [e["source"]["seq"] for e in published]
    assert source.outbox_ids() == []


def test_second_relay_gets_nothing_while_the_first_holds_a_batch(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    source.write(*(f"INSERT INTO customers (id) VALUES ({n})" for n in range(1, 4)))
    first, second = relays(max_batch_events=2), relays(max_batch_events=2)

    held = first.poll(5)
    started = time.monotonic()
    assert second.poll(0.5) is None  # not row 3, though it is there: that could overtake 1-2
    assert time.monotonic() - started >= 0.4
    assert held is not None
    first.confirm(held)
    [third] = relay_all(second)
    assert third["after"]["id"] == 3
    assert third["source"]["seq"] > max(e["source"]["seq"] for e in events_of(held))


def test_idle_poll_returns_none_and_wakes_for_a_new_change(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    source.install()
    relay = relays()
    assert relay.poll(0.2) is None
    # The write waits on the relay between polls only: an idle poll holds no lock.
    writer = threading.Timer(0.3, source.write, ["INSERT INTO customers (id) VALUES (1)"])
    writer.start()
    started = time.monotonic()
    batch = relay.poll(10)
    writer.join()
    assert time.monotonic() - started < 3
    assert [e["after"]["id"] for e in events_of(batch)] == [1]


def test_relay_without_outbox_says_to_install(
    source: Source, relays: Callable[..., OutboxCapture]
) -> None:
    with pytest.raises(CaptureError, match="syncd capture install -c CONFIG --source crm"):
        relays().poll(0.1)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mariadb"])
def test_unreachable_source_is_source_unavailable(dialect: str, tmp_path: Path) -> None:
    url = {
        "postgresql": f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere",
        "sqlite": f"sqlite:///{tmp_path / 'missing-directory' / 'source.db'}",
        "mariadb": make_url(MARIADB_URL)
        .set(port=free_port(), database="nowhere")
        .render_as_string(hide_password=False),
    }[dialect]
    relay = OutboxCapture(make_url(url), "crm", ["customers"])
    with pytest.raises(SourceUnavailable):
        relay.poll(0.1)
    relay.close()
    with pytest.raises(SourceUnavailable):
        install(make_url(url), "crm", ["customers"])


@pytest.fixture(params=["postgresql", "mariadb"])
def server_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    """A source on a database server, whose sessions can be killed (SQLite has none)."""
    with empty_database(request, tmp_path) as (url, schema):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        yield Source(url, request.param, schema, engine)
        engine.dispose()


def test_relay_reconnects_after_its_connection_is_killed(server_source: Source) -> None:
    source = server_source
    source.install("customers")
    relay = OutboxCapture(source.url, "crm", [source.table("customers")])
    try:
        assert relay.poll(0.1) is None
        kill_other_sessions(source)
        source.write("INSERT INTO customers (id) VALUES (1)")
        with pytest.raises(SourceUnavailable):
            relay.poll(1)
        assert [e["after"] for e in relay_all(relay)] == [{"id": 1}]
    finally:
        relay.close()


def kill_other_sessions(source: Source) -> None:
    """Kill every other session on the source's database (the relay's, here)."""
    with source.engine.connect() as conn:
        if source.dialect == "postgresql":
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return
        sessions = conn.exec_driver_sql(
            "SELECT ID FROM information_schema.PROCESSLIST "
            "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
        ).scalars()
        for session in list(sessions):
            conn.exec_driver_sql(f"KILL {int(session)}")
