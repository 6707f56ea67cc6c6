"""Logical decoding capture (pgoutput) against the real PostgreSQL cluster (wal_level=logical).

Each test has its own database and source name, so its own slot and publication; the fixture
closes the captures and drops the slot afterwards, because a slot left behind keeps WAL.
"""

from __future__ import annotations

import random
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from syncd.capture import Captured, CapturedBatch
from syncd.capture.logical import LogicalCapture, install, publication_name, slot_name, uninstall
from syncd.errors import CaptureError, SourceUnavailable
from tests.services import PostgresCluster, wait_until

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE orders (id integer PRIMARY KEY, status text, total numeric(10, 2));
CREATE TABLE documents (id integer PRIMARY KEY, title text, body text);
-- EXTERNAL: stored out of line without compression, so 100 kB really is TOASTed.
ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE tags (name text NOT NULL, color text);
ALTER TABLE tags REPLICA IDENTITY FULL;
CREATE TABLE kinds (id bigint PRIMARY KEY, flag boolean, ratio double precision,
                    amount numeric(12, 2), doc jsonb, born timestamp, raw bytea,
                    numbers integer[], nothing text);
CREATE TABLE audit (id serial PRIMARY KEY, note text);  -- never published
CREATE TABLE keyless (a integer, b text);
-- FULL with a primary key: pgoutput flags every column as key, the group must not follow.
CREATE TABLE accounts (owner text, id integer, region text, balance numeric(10, 2),
                       PRIMARY KEY (region, id));
ALTER TABLE accounts REPLICA IDENTITY FULL;
"""
TABLES = ["orders", "public.documents", "tags", "kinds", "accounts"]
EVENT_TIMEOUT_S = 15


@dataclass
class Source:
    """A source database with the schema above, and the captures a test opened on it."""

    name: str
    url: URL
    engine: sa.Engine
    captures: list[LogicalCapture] = field(default_factory=list)

    def run(self, *statements: str, **params: Any) -> None:
        """The statements in one transaction."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def scalar(self, query: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()

    def capture(self, **kwargs: Any) -> LogicalCapture:
        capture = LogicalCapture(self.url, self.name, TABLES, **kwargs)
        self.captures.append(capture)
        return capture

    def slot_active(self) -> bool:
        return bool(
            self.scalar(
                "SELECT active FROM pg_replication_slots WHERE slot_name = :s",
                s=slot_name(self.name),
            )
        )

    def wait_until_slot_released(self) -> None:
        """The server notices a closed replication connection a moment after it closes."""
        wait_until(lambda: not self.slot_active(), timeout_s=10, what="the slot to be released")

    def confirmed_flush(self) -> int:
        return int(
            self.scalar(
                "SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots"
                " WHERE slot_name = :s",
                s=slot_name(self.name),
            )
        )

    def wait_until_sent(self, lsn: int) -> None:
        """Until the slot's walsender has sent the WAL up to ``lsn`` to the capture."""
        query = (
            "SELECT (sent_lsn - '0/0')::bigint FROM pg_stat_replication r"
            " JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = :s"
        )
        wait_until(
            lambda: (self.scalar(query, s=slot_name(self.name)) or 0) >= lsn,
            timeout_s=EVENT_TIMEOUT_S,
            what=f"the walsender to send WAL up to {lsn}",
        )

    def current_lsn(self) -> int:
        return int(self.scalar("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint"))

    def published(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT schemaname, tablename FROM pg_publication_tables"
                    " WHERE pubname = :p ORDER BY 1, 2"
                ),
                {"p": publication_name(self.name)},
            )
            return [(schema, table) for schema, table in rows]


@pytest.fixture
def source(postgres: PostgresCluster) -> Iterator[Source]:
    name = f"capture_{uuid.uuid4().hex[:12]}"
    url = make_url(postgres.create_database(name))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    created = Source(name, url, engine)
    yield created
    for capture in created.captures:
        capture.close()
    created.wait_until_slot_released()
    uninstall(url, name)
    engine.dispose()


@pytest.fixture
def installed(source: Source) -> Source:
    install(source.url, source.name, TABLES)
    return source


def poll_batches(capture: LogicalCapture, events: int) -> list[CapturedBatch]:
    """Poll until ``events`` events have come, in as many batches as the capture made."""
    batches: list[CapturedBatch] = []
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while sum(len(batch.events) for batch in batches) < events:
        assert time.monotonic() < deadline, f"timed out waiting for {events} events: {batches}"
        batch = capture.poll(0.5)
        if batch is not None:
            batches.append(batch)
    assert sum(len(batch.events) for batch in batches) == events
    return batches


def poll_events(capture: LogicalCapture, events: int) -> list[Captured]:
    return [captured for batch in poll_batches(capture, events) for captured in batch.events]


def connected(source: Source) -> LogicalCapture:
    """A capture that has started streaming, so that later commits are what it reads."""
    capture = source.capture()
    assert capture.poll(0.1) is None
    return capture


# ------------------------------------------------------------------------- install/uninstall


def test_install_is_idempotent_and_uninstall_removes_slot_and_publication(source: Source) -> None:
    first = install(source.url, source.name, TABLES)
    assert any(line.startswith(f"replication slot syncd_{source.name} created") for line in first)
    assert source.published() == [
        ("public", "accounts"),
        ("public", "documents"),
        ("public", "kinds"),
        ("public", "orders"),
        ("public", "tags"),
    ]
    again = install(source.url, source.name, TABLES)
    assert not any("created" in line for line in again)
    assert f"replication slot syncd_{source.name} already exists" in again

    narrowed = install(source.url, source.name, ["public.orders"])
    assert f"publication syncd_{source.name} now publishes public.orders" in narrowed
    assert source.published() == [("public", "orders")]

    removed = uninstall(source.url, source.name)
    assert any("dropped" in line for line in removed)
    assert (
        source.scalar(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = :s",
            s=slot_name(source.name),
        )
        == 0
    )
    assert (
        source.scalar(
            "SELECT count(*) FROM pg_publication WHERE pubname = :p",
            p=publication_name(source.name),
        )
        == 0
    )
    assert all("does not exist" in line for line in uninstall(source.url, source.name))


def test_table_without_key_is_refused_with_the_fix(source: Source) -> None:
    with pytest.raises(CaptureError) as refused:
        install(source.url, source.name, ["orders", "keyless"])
    message = str(refused.value)
    assert "public.keyless" in message
    assert "primary key" in message
    assert "ALTER TABLE public.keyless REPLICA IDENTITY FULL" in message
    # Refused before anything was created.
    assert source.scalar("SELECT count(*) FROM pg_publication") == 0

    with pytest.raises(CaptureError, match=r"public\.missing does not exist"):
        install(source.url, source.name, ["missing"])


def test_uninstall_refuses_while_a_capture_reads_the_slot(installed: Source) -> None:
    capture = connected(installed)
    with pytest.raises(CaptureError, match="stop the daemon first"):
        uninstall(installed.url, installed.name)
    capture.close()


def test_capture_before_install_says_how_to_install(source: Source) -> None:
    with pytest.raises(CaptureError, match="syncd capture install -c CONFIG --source"):
        source.capture().poll(0.1)

    install(source.url, source.name, ["orders"])
    with pytest.raises(CaptureError, match=r"does not publish public\.accounts, public\.documents"):
        source.capture().poll(0.1)


# ----------------------------------------------------------------------------- the events


def test_transaction_becomes_events_in_order_with_one_txid(installed: Source) -> None:
    capture = connected(installed)
    installed.run(
        "INSERT INTO orders VALUES (1, 'new', 9.50)",
        "INSERT INTO orders VALUES (2, 'new', 3)",
        "UPDATE orders SET status = 'paid' WHERE id = 1",
        "DELETE FROM orders WHERE id = 2",
    )
    [batch] = poll_batches(capture, 4)
    events = [captured.event for captured in batch.events]
    assert [event["op"] for event in events] == ["c", "c", "u", "d"]
    assert events[0]["after"] == {"id": 1, "status": "new", "total": "9.50"}
    assert events[0]["before"] is None
    assert events[2]["after"] == {"id": 1, "status": "paid", "total": "9.50"}
    assert events[2]["before"] is None  # the key did not change: pgoutput sends no old key
    assert [captured.group for captured in batch.events] == [
        "public.orders:[1]",
        "public.orders:[2]",
        "public.orders:[1]",
        "public.orders:[2]",
    ]
    sources = [event["source"] for event in events]
    lsns = [block["lsn"] for block in sources]
    assert lsns == sorted(set(lsns))
    assert batch.token > lsns[-1]
    assert len({block["txId"] for block in sources}) == 1
    assert {(block["name"], block["schema"], block["table"]) for block in sources} == {
        (installed.name, "public", "orders")
    }
    commit_ms = sources[0]["ts_ms"]
    assert abs(commit_ms - time.time() * 1000) < 60_000
    assert all(event["ts_ms"] >= commit_ms for event in events)


def test_rolled_back_transaction_captures_nothing(installed: Source) -> None:
    capture = connected(installed)
    with installed.engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, 'never', 1)")
        conn.rollback()
    installed.run("INSERT INTO audit (note) VALUES ('unpublished table')")
    installed.run("INSERT INTO orders VALUES (2, 'marker', 2)")
    [captured] = poll_events(capture, 1)
    assert captured.event["after"]["id"] == 2
    assert capture.poll(1.0) is None


def test_update_leaving_a_toasted_column_untouched_leaves_it_out(installed: Source) -> None:
    # Random letters do not compress: 100 kB stays 100 kB, far past the TOAST threshold.
    body = "".join(random.choices(string.ascii_letters + string.digits, k=100_000))
    capture = connected(installed)
    installed.run("INSERT INTO documents VALUES (1, 'draft', :body)", body=body)
    [inserted] = poll_events(capture, 1)
    assert inserted.event["after"]["body"] == body
    installed.run("UPDATE documents SET title = 'final' WHERE id = 1")
    [captured] = poll_events(capture, 1)
    assert captured.event["op"] == "u"
    assert captured.event["after"] == {"id": 1, "title": "final"}
    assert captured.event["before"] is None
    assert captured.event["unavailable"] == ["body"]

    installed.run("UPDATE documents SET body = :body WHERE id = 1", body=body[::-1])
    [changed] = poll_events(capture, 1)
    assert changed.event["after"]["body"] == body[::-1]
    assert "unavailable" not in changed.event


def test_delete_before_holds_the_key(installed: Source) -> None:
    capture = connected(installed)
    installed.run("INSERT INTO orders VALUES (1, 'new', 1)", "INSERT INTO tags VALUES ('x', 'red')")
    poll_events(capture, 2)
    installed.run("DELETE FROM orders WHERE id = 1", "DELETE FROM tags WHERE name = 'x'")
    deleted_order, deleted_tag = poll_events(capture, 2)
    assert deleted_order.event["op"] == "d"
    assert deleted_order.event["before"] == {"id": 1}
    assert deleted_order.event["after"] is None
    assert deleted_order.group == "public.orders:[1]"
    # REPLICA IDENTITY FULL: the whole old row, and every column is part of the key.
    assert deleted_tag.event["before"] == {"name": "x", "color": "red"}
    assert deleted_tag.group == 'public.tags:["x","red"]'


def test_full_identity_with_a_primary_key_groups_by_the_key_across_updates(
    installed: Source,
) -> None:
    capture = connected(installed)
    installed.run(
        "INSERT INTO accounts VALUES ('ana', 1, 'eu', 10)",
        "UPDATE accounts SET balance = 20 WHERE id = 1",
        "UPDATE accounts SET owner = 'bo', balance = 30 WHERE id = 1",
        "UPDATE accounts SET id = 2 WHERE id = 1",
        "DELETE FROM accounts WHERE id = 2",
    )
    events = poll_events(capture, 5)
    # The primary key in column order (id before region), as the default identity has it.
    assert [captured.group for captured in events] == [
        'public.accounts:[1,"eu"]',
        'public.accounts:[1,"eu"]',
        'public.accounts:[1,"eu"]',
        'public.accounts:[2,"eu"]',
        'public.accounts:[2,"eu"]',
    ]
    update, delete = events[2].event, events[4].event
    # FULL still sends the whole old row, for updates and deletes.
    assert update["before"] == {"owner": "ana", "id": 1, "region": "eu", "balance": "20.00"}
    assert update["after"] == {"owner": "bo", "id": 1, "region": "eu", "balance": "30.00"}
    assert delete["op"] == "d" and delete["after"] is None
    assert delete["before"] == {"owner": "bo", "id": 2, "region": "eu", "balance": "30.00"}

    # Without its primary key the table's next Relation message has the capture look again:
    # FULL without a key groups by every column.
    installed.run("ALTER TABLE accounts DROP CONSTRAINT accounts_pkey")
    installed.run("INSERT INTO accounts VALUES ('cy', 3, 'us', 5)")
    [keyless] = poll_events(capture, 1)
    assert keyless.group == 'public.accounts:["cy",3,"us","5.00"]'


def test_key_change_carries_the_old_key_in_before_and_the_new_in_after(installed: Source) -> None:
    capture = connected(installed)
    installed.run("INSERT INTO orders VALUES (1, 'new', 1)")
    poll_events(capture, 1)
    installed.run("UPDATE orders SET id = 2 WHERE id = 1")
    [captured] = poll_events(capture, 1)
    assert captured.event["op"] == "u"
    assert captured.event["before"] == {"id": 1}
    assert captured.event["after"] == {"id": 2, "status": "new", "total": "1.00"}
    assert captured.group == "public.orders:[2]"


def test_truncate_is_one_t_event_per_table(installed: Source) -> None:
    capture = connected(installed)
    installed.run("INSERT INTO orders VALUES (1, 'new', 1)")
    poll_events(capture, 1)
    installed.run("TRUNCATE orders, documents")
    events = poll_events(capture, 2)
    assert sorted(captured.group for captured in events) == ["public.documents", "public.orders"]
    for captured in events:
        assert captured.event["op"] == "t"
        assert captured.event["before"] is None
        assert captured.event["after"] is None
        assert captured.event["source"]["lsn"] > 0
    assert len({captured.event["source"]["txId"] for captured in events}) == 1


def test_values_arrive_json_friendly(installed: Source) -> None:
    capture = connected(installed)
    installed.run(
        "INSERT INTO kinds VALUES (9007199254740993, true, 'NaN', 12.5, '{\"a\": [1, null]}',"
        " '2024-01-02 03:04:05.5', '\\xdeadbeef', '{1,2}', NULL)"
    )
    [captured] = poll_events(capture, 1)
    assert captured.event["after"] == {
        "id": 9007199254740993,
        "flag": True,
        "ratio": "NaN",
        "amount": "12.50",
        "doc": '{"a": [1, null]}',  # json and jsonb as their text: every digit, as written
        "born": "2024-01-02 03:04:05.5",
        "raw": "\\xdeadbeef",
        "numbers": "{1,2}",
        "nothing": None,
    }


# -------------------------------------------------------------------------- batches, confirm


def test_batches_hold_whole_transactions_up_to_the_limit(installed: Source) -> None:
    capture = installed.capture(max_batch_events=3)
    assert capture.poll(0.1) is None
    sizes = [2, 2, 5, 1]  # the 5-row transaction is larger than the limit
    next_id = iter(range(1, 100))
    for size in sizes:
        installed.run(
            *[f"INSERT INTO orders VALUES ({next(next_id)}, 'x', 1)" for _ in range(size)]
        )
    installed.wait_until_sent(installed.current_lsn())
    batches = poll_batches(capture, sum(sizes))
    # Everything was there at the first poll: the batch closes at the first transaction
    # boundary at or past 3 events, and the 5-row transaction is not split.
    shapes = [[captured.event["source"]["txId"] for captured in batch.events] for batch in batches]
    t1, t2, t3, t4 = sorted({txid for shape in shapes for txid in shape})
    assert shapes == [[t1, t1, t2, t2], [t3] * 5, [t4]]


def test_confirmed_transactions_are_not_resent_after_reconnect(installed: Source) -> None:
    capture = connected(installed)
    installed.run("INSERT INTO orders VALUES (1, 'confirmed', 1)")
    [first] = poll_batches(capture, 1)
    capture.confirm(first)
    installed.run("INSERT INTO orders VALUES (2, 'unconfirmed', 1)")
    poll_batches(capture, 1)  # handed out, never confirmed: as if the process died here
    capture.close()
    installed.wait_until_slot_released()

    again = installed.capture()
    [resent] = poll_events(again, 1)
    assert resent.event["after"]["id"] == 2
    assert again.poll(1.0) is None


def test_dropped_connection_raises_source_unavailable_then_reconnects(installed: Source) -> None:
    capture = connected(installed)
    installed.run("INSERT INTO orders VALUES (1, 'new', 1)")
    poll_batches(capture, 1)
    installed.scalar(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = :s",
        s=slot_name(installed.name),
    )
    with pytest.raises(SourceUnavailable):
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while time.monotonic() < deadline:
            capture.poll(0.5)
    installed.wait_until_slot_released()
    # The same object reconnects; the unconfirmed transaction comes again.
    [resent] = poll_events(capture, 1)
    assert resent.event["after"]["id"] == 1


def test_idle_capture_releases_wal_but_never_past_an_unconfirmed_batch(installed: Source) -> None:
    capture = installed.capture(status_interval_s=1)
    assert capture.poll(0.1) is None
    installed.run("INSERT INTO orders VALUES (1, 'new', 1)")
    [batch] = poll_batches(capture, 1)
    installed.run("INSERT INTO audit (note) VALUES ('moves WAL on')")
    for _ in range(5):  # long enough for status updates and keepalives to go both ways
        assert capture.poll(0.5) is None
    assert installed.confirmed_flush() < batch.token

    capture.confirm(batch)
    wait_until(
        lambda: installed.confirmed_flush() >= batch.token,
        timeout_s=EVENT_TIMEOUT_S,
        what="the server to take the confirmed position",
    )
    before_unpublished = installed.current_lsn()
    installed.run("INSERT INTO audit (note) VALUES ('nothing captures this')")
    wait_until(
        lambda: capture.poll(0.3) is None and installed.confirmed_flush() > before_unpublished,
        timeout_s=EVENT_TIMEOUT_S,
        what="the slot to move past the unpublished transaction",
    )
