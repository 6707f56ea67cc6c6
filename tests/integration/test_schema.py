"""Target tables from the source's catalog, and the source's new columns reaching them.

What data teams do: a PostgreSQL source with typed columns (and odd names), three empty
targets (PostgreSQL, SQLite, MariaDB) fed by mirror mappings that do not mention
``on_new_column``. ``syncd schema`` prints DDL and creates nothing; ``--apply`` creates the
tables, their primary keys and the positions tables; a second ``--apply`` has nothing to do.
Then capture (logical and outbox), snapshot and the stream copy the rows exactly — and an
``ALTER TABLE … ADD COLUMN`` at the source mid-stream reaches every target with its values,
nothing dead-lettered.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.schema import catalog
from tests.harness import Daemon, StompClient, syncd
from tests.services import Broker, PostgresCluster, mariadb_database, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)

TABLE = '"Orders"'  # mixed case: every statement must quote it
SOURCE_SCHEMA = (
    f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, label text, amount numeric(12, 2), "
    "huge numeric, at timestamptz, day date, ok boolean, doc jsonb, blob bytea, "
    '"Order" text, "größe ""q""" bigint)'
)  # a reserved word, unicode and a quote in column names
# Column -> how its values are compared (canonical forms below).
KINDS = {
    "id": "int",
    "label": "text",
    "amount": "numeric",
    "huge": "numeric",
    "at": "timestamptz",
    "day": "date",
    "ok": "bool",
    "doc": "json",
    "blob": "bytes",
    "Order": "text",
    'größe "q"': "int",
}
NEW_COLUMNS = {"Note ☃": ("numeric(8,3)", "numeric"), "seen": ("timestamptz", "timestamptz")}
HUGE = "123456789012345678901234567890.123456789012345678901234567890"
ROWS = [
    (1, "plain", "12.50", "0.10", "2024-01-15 10:30:00.123456+00", "2024-01-15", True,
     '{"n": 1.50, "big": 12345678901234567890.5, "s": "ü"}', b"\x00\xff", "select", 2**62),
    (2, None, None, None, None, None, None, None, None, None, None),
    (3, "ünï ☃ 'q' \"d\"", "-9999999999.99", HUGE, "1999-12-31 23:59:59.999999+05:30",
     "1000-01-01", False, '[1, "two", {"x": null}]', b"", "", -(2**63)),
]  # fmt: skip
CONFIG = """\
broker:
  hosts: ["127.0.0.1:{port}"]
  heartbeat_ms: 2000
  dead_letter_queue: {dlq}
state_dir: state/
retry: {{initial_backoff_ms: 100, max_backoff_ms: 1000}}
databases:
  pg: {{url: "{pg}"}}
  lite: {{url: "{lite}"}}
  maria: {{url: "{maria}"}}
mappings: mappings/
sources:
  {name}:
    url: "{source}"
    capture: {mode}
    tables: [public.Orders]
"""
MAPPINGS = """\
mappings:
{items}
"""
ITEM = """\
  - name: orders_{db}
    source: {{system: {name}, table: public.Orders}}
    target: {{database: {db}, table: Orders}}
    key: [id]
"""


@dataclass
class World:
    directory: Path
    config: Path
    source: sa.Engine
    targets: dict[str, sa.Engine]  # pg, lite, maria
    dlq: str
    name: str
    mode: str

    def schema(self, *args: str) -> tuple[int, str, str]:
        done = syncd("schema", "-c", str(self.config), *args)
        return done.returncode, done.stdout, done.stderr

    def source_rows(self) -> dict[int, dict[str, Any]]:
        return self._pg_rows(self.source)

    def _pg_rows(self, engine: sa.Engine) -> dict[int, dict[str, Any]]:
        with engine.connect() as conn:
            columns = [c["name"] for c in sa.inspect(conn).get_columns("Orders", schema="public")]
            quoted = ", ".join(_pg_text(c) for c in columns)
            found = conn.exec_driver_sql(f"SELECT {quoted} FROM {TABLE}").all()
        return {row[0]: dict(zip(columns, row, strict=True)) for row in found}

    def target_rows(self, db: str) -> dict[int, dict[str, Any]]:
        engine = self.targets[db]
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("Orders"):
                return {}
        if db == "pg":  # read as the source is read: jsonb's text keeps its numbers
            return self._pg_rows(engine)
        with engine.connect() as conn:
            table = sa.Table("Orders", sa.MetaData(), autoload_with=conn)
            found = conn.execute(sa.select(table)).mappings().all()
        return {row["id"]: dict(row) for row in found}


def _pg_text(column: str) -> str:
    """Read every source column as text but bytea (exact digits, jsonb's own text)."""
    quoted = '"' + column.replace('"', '""') + '"'
    kind = KINDS.get(column) or NEW_COLUMNS[column][1]
    return quoted if kind in ("bytes", "int", "bool", "timestamptz") else f"{quoted}::text"


def canonical(kind: str, value: Any) -> Any:
    """One form per value whatever the dialect stored it as."""
    if value is None:
        return None
    if kind == "numeric":
        return str(value)  # the digits and the scale, exactly
    if kind == "timestamptz":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:  # MariaDB: its UTC wall time
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if kind == "date":
        return value.isoformat() if isinstance(value, date) else value
    if kind == "bool":
        return bool(value)
    if kind == "json":
        document = json.loads(value, parse_float=Decimal) if isinstance(value, str) else value
        return json.dumps(document, sort_keys=True, default=str)
    if kind == "bytes":
        return bytes(value)
    return value


def canonical_rows(rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    kinds = {**KINDS, **{c: k for c, (_t, k) in NEW_COLUMNS.items()}}
    return {
        key: {column: canonical(kinds[column], v) for column, v in row.items()}
        for key, row in rows.items()
    }


@pytest.fixture
def world(
    request: pytest.FixtureRequest, tmp_path: Path, broker: Broker, postgres: PostgresCluster
) -> Iterator[World]:
    mode = request.param
    run = next(_runs)
    name = f"schema{run}{mode[0]}"
    source_url = postgres.create_database(f"schema_source_{run}_{mode}")
    pg_url = postgres.create_database(f"schema_target_{run}_{mode}")
    lite_url = f"sqlite:///{tmp_path / 'lite.db'}"
    with mariadb_database(f"syncd_schema_{os.getpid()}_{run}") as maria_url:
        source = sa.create_engine(source_url)
        with source.begin() as conn:
            conn.exec_driver_sql(SOURCE_SCHEMA)
        dlq = f"/queue/syncd.schema-dlq-{run}"
        config = tmp_path / "config.yaml"
        config.write_text(
            CONFIG.format(
                port=broker.port,
                dlq=dlq,
                pg=pg_url,
                lite=lite_url,
                maria=maria_url,
                name=name,
                source=source_url,
                mode=mode,
            )
        )
        (tmp_path / "mappings").mkdir()
        items = "".join(ITEM.format(db=db, name=name) for db in ("pg", "lite", "maria"))
        (tmp_path / "mappings" / "orders.yaml").write_text(MAPPINGS.format(items=items))
        targets = {db: sa.create_engine(u) for db, u in (("pg", pg_url), ("lite", lite_url))}
        targets["maria"] = sa.create_engine(maria_url)
        try:
            yield World(tmp_path, config, source, targets, dlq, name, mode)
        finally:
            for engine in (source, *targets.values()):
                engine.dispose()


def insert(world: World, *rows: tuple[Any, ...]) -> None:
    marks = ", ".join(["%s"] * len(rows[0]))
    with world.source.begin() as conn:
        for row in rows:
            conn.exec_driver_sql(f"INSERT INTO {TABLE} VALUES ({marks})", row)


def target_types(world: World) -> dict[str, dict[str, str]]:
    """Each target's declared column types, in its own catalog's words."""
    found: dict[str, dict[str, str]] = {}
    with world.targets["pg"].connect() as conn:
        query = (
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = '\"Orders\"'::regclass AND attnum > 0 AND NOT attisdropped"
        )
        found["pg"] = dict(conn.exec_driver_sql(query).all())  # type: ignore[arg-type]
    with world.targets["lite"].connect() as conn:
        rows = conn.exec_driver_sql('PRAGMA table_info("Orders")').all()
        found["lite"] = {row[1]: row[2] for row in rows}
    with world.targets["maria"].connect() as conn:
        query = (
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'Orders'"
        )
        found["maria"] = dict(conn.exec_driver_sql(query).all())  # type: ignore[arg-type]
    return found


def primary_keys(world: World) -> dict[str, list[str]]:
    keys = {}
    for db, engine in world.targets.items():
        with engine.connect() as conn:
            keys[db] = sa.inspect(conn).get_pk_constraint("Orders")["constrained_columns"]
    return keys


def has_tables(world: World) -> dict[str, list[str]]:
    found = {}
    for db, engine in world.targets.items():
        with engine.connect() as conn:
            found[db] = sorted(sa.inspect(conn).get_table_names())
    return found


def converge(world: World, daemon: Daemon) -> None:
    """Every target equal to the source, row for row and value for value."""

    def equal() -> bool:
        want = canonical_rows(world.source_rows())
        return all(canonical_rows(world.target_rows(db)) == want for db in world.targets)

    try:
        wait_until(equal, timeout_s=60, what="every target to equal the source")
    except AssertionError:
        want = canonical_rows(world.source_rows())
        have = {db: canonical_rows(world.target_rows(db)) for db in world.targets}
        raise AssertionError(f"source {want}\ntargets {have}\n{daemon.log()[-4000:]}") from None


def schema_prints_then_applies_then_has_nothing_to_do(world: World) -> None:
    """syncd schema: DDL for every target and nothing created; --apply: the tables with the
    source's types and key; again: nothing to do."""
    # syncd schema: DDL for every target, nothing created.
    code, out, err = world.schema()
    assert code == 0, err
    assert out.count("CREATE TABLE IF NOT EXISTS") == 6, out  # Orders + positions, × 3
    assert "nothing was changed" in out
    assert has_tables(world) == {"pg": [], "lite": [], "maria": []}

    code, out, err = world.schema("--apply")
    assert code == 0, err
    assert "applied: 6 of 6" in out, out
    assert has_tables(world) == {db: ["Orders", "syncd_positions"] for db in world.targets}
    assert primary_keys(world) == {"pg": ["id"], "lite": ["id"], "maria": ["id"]}
    types = target_types(world)
    with world.source.connect() as conn:
        query = (
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = '\"Orders\"'::regclass AND attnum > 0 AND NOT attisdropped"
        )
        assert types["pg"] == dict(conn.exec_driver_sql(query).all())  # type: ignore[arg-type]
    assert types["lite"] == {
        "id": "INTEGER", "label": "TEXT", "amount": "TEXT", "huge": "TEXT", "at": "TEXT",
        "day": "TEXT", "ok": "BOOLEAN", "doc": "TEXT", "blob": "BLOB", "Order": "TEXT",
        'größe "q"': "INTEGER",
    }  # fmt: skip
    assert types["maria"] == {
        "id": "int(11)", "label": "longtext", "amount": "decimal(12,2)", "huge": "longtext",
        "at": "datetime(6)", "day": "date", "ok": "tinyint(1)", "doc": "longtext",
        "blob": "longblob", "Order": "longtext", 'größe "q"': "bigint(20)",
    }  # fmt: skip

    # Again: nothing to do, nothing changed.
    code, out, err = world.schema("--apply")
    assert (code, out.strip()) == (
        0,
        "-- nothing to do: every target table has what its mappings need",
    ), err


@pytest.mark.parametrize("world", ["logical", "outbox"], indirect=True)
def test_schema_then_capture_then_a_new_source_column_reaches_every_target(
    world: World, broker: Broker
) -> None:
    config = str(world.config)
    insert(world, *ROWS)

    if world.mode == "logical":  # what syncd schema does depends on no capture mode
        schema_prints_then_applies_then_has_nothing_to_do(world)
    else:
        code, out, err = world.schema("--apply")
        assert code == 0 and "applied: 6 of 6" in out, err

    done = syncd("capture", "install", "-c", config)
    assert done.returncode == 0, done.stderr
    daemon = Daemon(world.config).start()
    try:
        done = syncd("snapshot", "-c", config, "--source", world.name)
        assert done.returncode == 0, done.stderr
        insert(world, (4, "after install", "1.00", "2", "2026-06-30 18:14:59.999999+00",
                       "2026-06-30", True, '{"k": [1, 2.0]}', b"\x01", "x", 4))  # fmt: skip
        converge(world, daemon)

        # The source gains columns mid-stream; the events that carry them add them.
        with world.source.begin() as conn:
            for column, (kind, _how) in NEW_COLUMNS.items():
                conn.exec_driver_sql(f'ALTER TABLE {TABLE} ADD COLUMN "{column}" {kind}')
            conn.exec_driver_sql(
                f"""UPDATE {TABLE} SET "Note ☃" = 12345.678, seen = '2026-01-02 03:04:05+00'
                    WHERE id = 1"""
            )
        insert(world, (5, "new", "0.01", "-0", None, None, None, None, None, None, None,
                       None, "2026-02-03 04:05:06.5+00"))  # fmt: skip
        with world.source.begin() as conn:
            conn.exec_driver_sql(f'UPDATE {TABLE} SET "Note ☃" = -0.001 WHERE id = 3')
            conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE id = 2")
        converge(world, daemon)
        log = daemon.log()
    finally:
        assert daemon.stop() == 0

    rows = canonical_rows(world.target_rows("maria"))
    assert rows[1]["Note ☃"] == "12345.678" and rows[3]["huge"] == HUGE
    assert len(re.findall(r"schema change: ALTER TABLE", log)) == 6, log
    types = target_types(world)
    assert types["pg"]["Note ☃"] == "numeric(8,3)"
    assert types["pg"]["seen"] == "timestamp with time zone"
    assert (types["lite"]["Note ☃"], types["maria"]["Note ☃"]) == ("TEXT", "decimal(8,3)")
    assert types["maria"]["seen"] == "datetime(6)"
    client = StompClient(broker.port)
    try:
        assert client.drain(world.dlq, idle_s=0.5) == []
    finally:
        client.close()


LITE_CONFIG = """\
broker: {{hosts: ["127.0.0.1:1"]}}
databases:
  lite: {{url: "sqlite:///{lite}"}}
mappings: mappings/
sources:
  crm:
    url: "{source}"
    capture: outbox
    tables: [public.things]
"""
THINGS = """\
mappings:
  - name: things
    source: {{system: crm, table: public.things}}
    target: {{database: lite, table: things}}
    key: [id]
{extra}"""


def test_schema_refuses_a_type_without_a_safe_target_and_check_warns_of_drift(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    source_url = postgres.create_database(f"schema_things_{next(_runs)}")
    source = sa.create_engine(source_url)
    with source.begin() as conn:
        conn.exec_driver_sql("CREATE TYPE pair AS (a integer, b integer)")
        conn.exec_driver_sql("CREATE TABLE things (id integer PRIMARY KEY, p pair, n text)")
    config = tmp_path / "config.yaml"
    config.write_text(LITE_CONFIG.format(lite=tmp_path / "lite.db", source=source_url))
    (tmp_path / "mappings").mkdir()
    mapping_file = tmp_path / "mappings" / "things.yaml"
    try:
        mapping_file.write_text(THINGS.format(extra=""))
        done = syncd("schema", "-c", str(config), "--apply")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "things.yaml:2: mapping things: column p (pair): " in done.stderr
        assert "leave it out (exclude: [p])" in done.stderr
        assert not (tmp_path / "lite.db").exists()  # refused before any target was touched

        mapping_file.write_text(THINGS.format(extra="    exclude: [p]\n"))
        done = syncd("schema", "-c", str(config), "--apply")
        assert done.returncode == 0, done.stderr
        with source.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE things ADD COLUMN extra numeric(5, 1)")
        done = syncd("check", "-c", str(config))
        assert done.returncode == 0, done.stderr
        assert "warning: lite.things has no column extra, which its source has" in done.stderr
    finally:
        source.dispose()


OUTBOX_SOURCES = """\
broker: {{hosts: ["127.0.0.1:1"]}}
databases:
  pg: {{url: "{pg}"}}
mappings: mappings/
sources:
  lite:
    url: "sqlite:///{lite}"
    capture: outbox
    tables: [items]
  maria:
    url: "{maria}"
    capture: outbox
    tables: [items]
"""
ITEMS = """\
mappings:
  - name: from_lite
    source: {system: lite, table: items}
    target: {database: pg, table: lite_items}
    key: [id]
  - name: from_maria
    source: {system: maria, table: items}
    target: {database: pg, table: maria_items}
    key: [code]
"""
ITEMS_DDL = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, price DECIMAL(10, 2),"
    " ok BOOLEAN, at DATETIME(6), body TEXT, raw BLOB)"
)


def test_sqlite_and_mariadb_outbox_sources_make_postgresql_tables(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    from syncd.commands import schema as command
    from syncd.config import load_config
    from syncd.mapping import load_mappings

    lite = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{lite}")
    with engine.begin() as conn:
        conn.exec_driver_sql(ITEMS_DDL.replace("DATETIME(6)", "DATETIME"))
    engine.dispose()
    pg_url = postgres.create_database(f"schema_items_{next(_runs)}")
    with mariadb_database(f"syncd_schema_items_{os.getpid()}") as maria_url:
        engine = sa.create_engine(maria_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(ITEMS_DDL.replace("id INTEGER PRIMARY KEY", "id INTEGER")
                                 .replace(" NOT NULL,", " NOT NULL PRIMARY KEY,"))  # fmt: skip
        engine.dispose()
        config_path = tmp_path / "config.yaml"
        config_path.write_text(OUTBOX_SOURCES.format(pg=pg_url, lite=lite, maria=maria_url))
        (tmp_path / "mappings").mkdir()
        (tmp_path / "mappings" / "items.yaml").write_text(ITEMS)
        config = load_config(config_path)
        mappings = load_mappings(config.mappings_dir, list(config.databases))
        plans = command.plan(config, command.chosen(config, mappings, None))
        assert command.apply(config, plans) == 3  # two tables and the positions table
    target = sa.create_engine(pg_url)
    try:
        with target.connect() as conn:
            lite_table = catalog.read_table(conn, "lite_items")
            maria_table = catalog.read_table(conn, "maria_items")
    finally:
        target.dispose()
    assert lite_table is not None and maria_table is not None
    assert {c.name: c.type for c in lite_table.columns} == {
        "id": "bigint", "code": "text", "price": "numeric(10,2)", "ok": "boolean",
        "at": "timestamp without time zone", "body": "text", "raw": "bytea",
    }  # fmt: skip
    assert {c.name: c.type for c in maria_table.columns} == {
        "id": "integer", "code": "character varying(20)", "price": "numeric(10,2)",
        "ok": "smallint", "at": "timestamp without time zone", "body": "text", "raw": "bytea",
    }  # fmt: skip
    assert (lite_table.primary_key, maria_table.primary_key) == (("id",), ("code",))
