"""Snapshots against real databases: PostgreSQL (logical and outbox), SQLite and MariaDB.

``publish`` is a list that collects each chunk here; what a snapshot owes the broker is only
that it publishes before it saves, which the resume tests prove from the saved state.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from syncd.capture import SNAPSHOT_POSITION, Captured, logical, outbox
from syncd.capture.snapshot import SnapshotReport, run_snapshot, state_path
from syncd.errors import CaptureError, SourceUnavailable
from tests.services import PostgresCluster, free_port, mariadb_database, wait_until

pytestmark = pytest.mark.integration

# Portable to all three; MariaDB cannot key a TEXT column, hence VARCHAR.
SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(100), score NUMERIC(10, 2));
CREATE TABLE pairs (a INTEGER NOT NULL, b VARCHAR(100) NOT NULL, v VARCHAR(100),
                    PRIMARY KEY (b, a));
CREATE TABLE notes (body VARCHAR(100))
"""
MODES = ["logical", "postgresql", "sqlite", "mariadb"]  # logical: PostgreSQL, logical capture
EVENT_TIMEOUT_S = 15
_databases = itertools.count(1)


@dataclass(frozen=True)
class SourceSettings:
    """What ``syncd.config.SourceConfig`` gives a snapshot."""

    name: str
    url: URL
    capture: str
    tables: tuple[str, ...]


@dataclass
class Source:
    """A source database with the tables above; ``schema`` is what its events carry."""

    name: str
    url: URL
    dialect: str  # postgresql, sqlite or mariadb
    capture: str
    schema: str
    engine: Engine
    state_dir: Path

    def table(self, name: str) -> str:
        """A table as config.yaml would list it for this dialect."""
        return f"public.{name}" if self.dialect == "postgresql" else name

    def settings(self, *tables: str) -> SourceSettings:
        listed = tuple(self.table(t) for t in tables or ("customers", "pairs"))
        return SourceSettings(self.name, self.url, self.capture, listed)

    def write(self, *statements: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def customers(self, count: int) -> None:
        self.write(
            *(f"INSERT INTO customers (id, name) VALUES ({n}, 'c{n}')" for n in range(1, count + 1))
        )

    def snapshot(self, publish: Collector, **kwargs: Any) -> SnapshotReport:
        tables = kwargs.pop("configured", ("customers", "pairs"))
        return run_snapshot(self.settings(*tables), publish, self.state_dir, **kwargs)

    def saved_state(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(state_path(self.state_dir, self.name).read_text())
        return document


@dataclass
class Collector:
    """A ``publish`` that keeps every chunk; ``fail_at`` (1-based) raises on that call."""

    chunks: list[list[Captured]] = field(default_factory=list)
    fail_at: int | None = None
    calls: int = 0
    after_chunk: threading.Event | None = None  # set once a chunk is published

    def __call__(self, events: Sequence[Captured]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("broker went away")
        self.chunks.append(list(events))
        if self.after_chunk is not None:
            self.after_chunk.set()

    @property
    def events(self) -> list[Captured]:
        return [captured for chunk in self.chunks for captured in chunk]

    def keys(self, column: str = "id") -> list[Any]:
        return [captured.event["after"][column] for captured in self.events]


@pytest.fixture(params=MODES)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    with database(request, tmp_path, str(request.param)) as created:
        yield created


@pytest.fixture
def sqlite_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    """For behaviour the dialect does not change (progress, selection): SQLite alone."""
    with database(request, tmp_path, "sqlite") as created:
        yield created


@contextmanager
def database(request: pytest.FixtureRequest, tmp_path: Path, mode: str) -> Iterator[Source]:
    """A fresh source database for ``mode`` (logical: PostgreSQL), with the tables above."""
    name = f"snap_{uuid.uuid4().hex[:10]}"
    dialect = "postgresql" if mode == "logical" else mode
    with ExitStack() as cleanup:
        if dialect == "sqlite":
            url, schema = make_url(f"sqlite:///{tmp_path / 'source.db'}"), "main"
        elif dialect == "postgresql":
            cluster: PostgresCluster = request.getfixturevalue("postgres")
            url, schema = make_url(cluster.create_database(name)), "public"
        else:
            # The pid keeps parallel or leftover runs' databases apart on the shared server.
            schema = f"syncd_snapshot_{os.getpid()}_{next(_databases)}"
            url = make_url(cleanup.enter_context(mariadb_database(schema)))
        engine = sa.create_engine(url)
        cleanup.callback(engine.dispose)
        with engine.begin() as conn:
            for statement in SCHEMA.split(";"):
                conn.exec_driver_sql(statement)
        capture = "logical" if mode == "logical" else "outbox"
        yield Source(name, url, dialect, capture, schema, engine, tmp_path / "state")


# ------------------------------------------------------------------------------ the events


# The customers table's column types as each source's catalog declares them: every event's
# source.types (what on_new_column: add goes by).
_PG = {"id": "integer", "name": "character varying(100)", "score": "numeric(10,2)"}
DECLARED = {
    "postgresql": _PG,
    "sqlite": {"id": "INTEGER", "name": "VARCHAR(100)", "score": "NUMERIC(10, 2)"},
    "mariadb": {"id": "INTEGER(11)", "name": "VARCHAR(100)", "score": "DECIMAL(10, 2)"},
}


def test_every_row_is_published_once_at_position_0_grouped_by_its_key(source: Source) -> None:
    source.customers(5)
    source.write("INSERT INTO pairs (a, b, v) VALUES (2, 'x', 'v1'), (1, 'y', NULL)")
    publish = Collector()
    before_ms = time.time() * 1000
    report = source.snapshot(publish, chunk_rows=2)

    assert [len(chunk) for chunk in publish.chunks] == [2, 2, 1, 2]
    assert [captured.event["after"]["id"] for captured in publish.events[:5]] == [1, 2, 3, 4, 5]
    position = "lsn" if source.capture == "logical" else "seq"
    customer = publish.events[0].event
    assert customer == {
        "op": "r",
        "before": None,
        "after": {"id": 1, "name": "c1", "score": None},
        "source": {
            "name": source.name,
            "schema": source.schema,
            "table": "customers",
            position: SNAPSHOT_POSITION,
            "ts_ms": customer["ts_ms"],
            "types": DECLARED[source.dialect],
            "connector": "mysql" if source.dialect == "mariadb" else source.dialect,
        },
        "ts_ms": customer["ts_ms"],
        "id": f"snapshot:{source.schema}.customers:[1]",
    }
    assert before_ms - 1000 <= customer["ts_ms"] <= time.time() * 1000 + 1000
    assert publish.events[0].group == f"{source.schema}.customers:[1]"
    pair_groups = [captured.group for captured in publish.events[5:]]
    # Key order for reading (b, a); groups as the capture makes them: logical in column
    # order (as pgoutput flags the key), outbox in key order (as the triggers' row_key).
    if source.capture == "logical":
        assert pair_groups == [f'{source.schema}.pairs:[2,"x"]', f'{source.schema}.pairs:[1,"y"]']
    else:
        assert pair_groups == [f'{source.schema}.pairs:["x",2]', f'{source.schema}.pairs:["y",1]']
    assert {captured.event["id"] for captured in publish.events[5:]} == {
        f"snapshot:{group}" for group in pair_groups
    }

    qualified = [f"{source.schema}.customers", f"{source.schema}.pairs"]
    assert report.rows == dict.fromkeys(qualified, 0) | {qualified[0]: 5, qualified[1]: 2}
    assert report.done == qualified and not report.resumed and not report.stopped
    assert report.lines()[-1] == f"snapshot of source {source.name} is complete"
    assert {t: s["done"] for t, s in source.saved_state()["tables"].items()} == dict.fromkeys(
        qualified, True
    )


def test_composite_key_pages_in_key_order_across_chunks(source: Source) -> None:
    source.write("INSERT INTO pairs (a, b) VALUES (3, 'a'), (1, 'b'), (2, 'a'), (1, 'a'), (9, 'B')")
    publish = Collector()
    source.snapshot(publish, chunk_rows=2, configured=("pairs",))
    read = [
        (captured.event["after"]["b"], captured.event["after"]["a"]) for captured in publish.events
    ]
    # Every row once, in key order (b, a) as the source's own collation sorts b.
    assert read == ordered(source, "SELECT b, a FROM pairs ORDER BY b, a")
    assert len(set(read)) == 5


def ordered(source: Source, query: str) -> list[tuple[Any, ...]]:
    with source.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(query)]


# ------------------------------------------------------------------- progress and resuming


def test_rerun_after_a_failed_publish_sends_only_what_was_not_confirmed(source: Source) -> None:
    source.customers(10)
    failing = Collector(fail_at=3)
    with pytest.raises(ConnectionError):
        source.snapshot(failing, chunk_rows=2, configured=("customers",))
    assert failing.keys() == [1, 2, 3, 4]
    saved = source.saved_state()["tables"][f"{source.schema}.customers"]
    assert saved["done"] is False and saved["rows"] == 4

    again = Collector()
    report = source.snapshot(again, chunk_rows=2, configured=("customers",))
    # The failed chunk (5, 6) was never confirmed, so it comes again; nothing before it.
    assert again.keys() == [5, 6, 7, 8, 9, 10]
    assert report.resumed and report.rows == {f"{source.schema}.customers": 6}

    finished = Collector()
    report = source.snapshot(finished, chunk_rows=2, configured=("customers",))
    assert finished.chunks == [] and report.skipped == [f"{source.schema}.customers"]
    assert any("done by an earlier run, skipped" in line for line in report.lines())


def test_restart_reads_every_table_from_the_start(sqlite_source: Source) -> None:
    source = sqlite_source
    source.customers(3)
    source.snapshot(Collector(), chunk_rows=2)
    publish = Collector()
    report = source.snapshot(publish, chunk_rows=2, restart=True)
    assert publish.keys() == [1, 2, 3] and not report.resumed and report.skipped == []


def test_stopping_ends_after_the_chunk_in_hand_and_a_rerun_goes_on(sqlite_source: Source) -> None:
    source = sqlite_source
    source.customers(5)
    stopping = threading.Event()
    publish = Collector(after_chunk=stopping)
    report = source.snapshot(publish, chunk_rows=2, stopping=stopping)
    assert publish.keys() == [1, 2] and report.stopped
    assert report.lines()[-1].startswith("stopped before the end")

    rest = Collector()
    assert source.snapshot(rest, chunk_rows=2).resumed
    assert rest.keys() == [3, 4, 5]


@pytest.mark.parametrize("mode", MODES)
def test_keys_of_many_types_resume_exactly(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key_types = {
        "logical": "ts timestamptz, id uuid, PRIMARY KEY (ts, id)",
        "postgresql": "ts timestamptz, id uuid, PRIMARY KEY (ts, id)",
        "sqlite": "ts TEXT, id BLOB, PRIMARY KEY (ts, id)",
        "mariadb": "ts DATETIME(6), id DECIMAL(20, 5), PRIMARY KEY (ts, id)",
    }[mode]
    ids = {
        "logical": [f"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1{n}'" for n in range(4)],
        "postgresql": [f"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1{n}'" for n in range(4)],
        "sqlite": [f"x'0{n}ff'" for n in range(4)],
        "mariadb": [f"123.4567{n}" for n in range(4)],
    }[mode]
    with database(request, tmp_path, mode) as source:
        source.write(f"CREATE TABLE stamps (note VARCHAR(10), {key_types})")
        stamps = ["2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123457"]
        source.write(
            *(
                f"INSERT INTO stamps (ts, id, note) VALUES ('{ts}', {i}, 'n')"
                for ts in stamps
                for i in ids
            )
        )
        # Stopped after every chunk of one row: each key is resumed from the saved state.
        published = []
        for _ in range(20):
            stopping = threading.Event()
            publish = Collector(after_chunk=stopping)
            report = source.snapshot(
                publish, chunk_rows=1, stopping=stopping, configured=("stamps",)
            )
            published += [captured.group for captured in publish.events]
            if not report.stopped:
                break
        assert len(published) == 8 and len(set(published)) == 8


# ----------------------------------------------------------------------- what is refused


def test_table_without_primary_key_is_refused_before_anything_is_published(
    source: Source,
) -> None:
    source.customers(1)
    publish = Collector()
    with pytest.raises(CaptureError, match=r"notes has no primary key, so it cannot be snapshot"):
        source.snapshot(publish, configured=("customers", "notes"))
    assert publish.chunks == []
    with pytest.raises(CaptureError, match="nothere does not exist"):
        source.snapshot(publish, configured=("customers", "nothere"))


def test_table_subset_reads_those_tables_only(sqlite_source: Source) -> None:
    source = sqlite_source
    source.customers(2)
    source.write("INSERT INTO pairs (a, b) VALUES (1, 'x')")
    publish = Collector()
    report = source.snapshot(publish, tables=["main.pairs"])
    assert [captured.event["source"]["table"] for captured in publish.events] == ["pairs"]
    assert list(report.rows) == ["main.pairs"]
    with pytest.raises(CaptureError, match="does not capture notes"):
        source.snapshot(publish, tables=["notes"])


# ---------------------------------------------------- values exactly as the capture has them


POSTGRES_KINDS = """
CREATE TABLE kinds (id bigint, region char(3), flag boolean, ratio double precision,
                    nan double precision, amount numeric(12, 2), doc jsonb, stamp timestamptz,
                    born timestamp, raw bytea, words text[], addr inet, empty text,
                    PRIMARY KEY (region, id));
"""
POSTGRES_ROW = (
    "INSERT INTO kinds VALUES (9007199254740993, 'eu', true, 1.5, 'NaN', 12.5,"
    " '{\"a\": [1, null], \"b\": 1.10}', '2024-01-02 03:04:05.5+02', '2024-01-02 03:04:05.5',"
    " '\\xdeadbeef', '{a,\"b c\"}', '10.0.0.1', NULL)"
)


def test_logical_snapshot_equals_what_the_logical_capture_sends(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    name = f"snap_{uuid.uuid4().hex[:10]}"
    url = make_url(postgres.create_database(name))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(POSTGRES_KINDS)
        conn.exec_driver_sql("CREATE TABLE full_kinds (LIKE kinds INCLUDING ALL)")
        conn.exec_driver_sql("ALTER TABLE full_kinds REPLICA IDENTITY FULL")
    tables = ("public.kinds", "public.full_kinds")
    logical.install(url, name, tables)
    capture = logical.LogicalCapture(url, name, tables)
    try:
        assert capture.poll(0.1) is None
        with engine.begin() as conn:
            conn.exec_driver_sql(POSTGRES_ROW)
            conn.exec_driver_sql(POSTGRES_ROW.replace("INTO kinds", "INTO full_kinds"))
        captured = poll_logical(capture, 2)
    finally:
        capture.close()
        wait_until(lambda: not slot_active(engine, name), timeout_s=10, what="slot release")
        logical.uninstall(url, name)
    publish = Collector()
    run_snapshot(SourceSettings(name, url, "logical", tables), publish, tmp_path)
    snapped = {c.event["source"]["table"]: c for c in publish.events}
    for change in captured:
        snap = snapped[change.event["source"]["table"]]
        assert snap.event["after"] == change.event["after"]
        assert (
            snap.group
            == change.group
            == "public." + change.event["source"]["table"] + ':[9007199254740993,"eu "]'
        )
    assert snapped["kinds"].event["after"]["flag"] is True
    assert snapped["kinds"].event["after"]["addr"] == "10.0.0.1"
    engine.dispose()


def poll_logical(capture: logical.LogicalCapture, count: int) -> list[Captured]:
    events: list[Captured] = []
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while len(events) < count:
        assert time.monotonic() < deadline, f"timed out waiting for {count} events"
        batch = capture.poll(0.5)
        if batch is not None:
            events += batch.events
    return events


def slot_active(engine: Engine, source: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT active FROM pg_replication_slots WHERE slot_name = :s"),
                {"s": logical.slot_name(source)},
            ).scalar()
        )


OUTBOX_KINDS = {
    "postgresql": (
        POSTGRES_KINDS.replace("PRIMARY KEY (region, id)", "PRIMARY KEY (id, region)"),
        POSTGRES_ROW,
    ),
    "sqlite": (
        "CREATE TABLE kinds (id INTEGER PRIMARY KEY, ratio REAL, amount NUMERIC(10, 2),"
        " raw BLOB, body TEXT, empty TEXT)",
        "INSERT INTO kinds VALUES (9007199254740993, 1.5, 12.50, x'deadbeef', 'Zoë ✓', NULL)",
    ),
    "mariadb": (
        "CREATE TABLE kinds (id BIGINT PRIMARY KEY, flag BOOLEAN, ratio DOUBLE,"
        " amount DECIMAL(12, 2), doc JSON, born DATETIME(3), day DATE, raw VARBINARY(10),"
        " body VARCHAR(20), empty TEXT)",
        "INSERT INTO kinds VALUES (9007199254740993, TRUE, 1.5, 12.5,"
        " '{\"a\": [1, null], \"b\": 1.10}', '2024-01-02 03:04:05.5', '2024-01-02',"
        " x'deadbeef', 'Zoë ✓', NULL)",
    ),
}


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mariadb"])
def test_outbox_snapshot_equals_what_the_outbox_relay_sends(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with database(request, tmp_path, dialect) as source:
        create, insert = OUTBOX_KINDS[dialect]
        source.write(create)
        outbox.install(source.url, source.name, [source.table("kinds")])
        source.engine.dispose()  # MariaDB: the new triggers, not a cached connection's view
        with source.engine.begin() as conn:
            conn.exec_driver_sql(insert)
        relay = outbox.OutboxCapture(source.url, source.name, [source.table("kinds")])
        try:
            batch = relay.poll(5)
        finally:
            relay.close()
        assert batch is not None
        [change] = batch.events
        publish = Collector()
        source.snapshot(publish, configured=("kinds",))
        [snap] = publish.events
        assert snap.event["after"] == change.event["after"]
        assert snap.group == change.group
        assert snap.event["source"]["schema"] == change.event["source"]["schema"]
        assert change.event["after"]["empty"] is None


@pytest.mark.parametrize("capture", ["logical", "outbox"])
def test_unreachable_source_is_source_unavailable(capture: str, tmp_path: Path) -> None:
    url = make_url(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere")
    settings = SourceSettings("crm", url, capture, ("public.customers",))
    with pytest.raises(SourceUnavailable, match="snapshot of source crm"):
        run_snapshot(settings, Collector(), tmp_path)


def test_damaged_state_is_refused_unless_restarting(sqlite_source: Source) -> None:
    source = sqlite_source
    source.customers(1)
    source.state_dir.mkdir()
    state_path(source.state_dir, source.name).write_text("{half a file")
    with pytest.raises(CaptureError, match=r"cannot be read .* --restart to start over"):
        source.snapshot(Collector())
    publish = Collector()
    source.snapshot(publish, restart=True)
    assert publish.keys() == [1]
