"""Type fidelity: every column type, with its edge values, arrives exactly — or as the README's
"Types" section says where the target cannot hold it.

Each capture mode runs once as its users run it (`syncd capture install`, `syncd run`,
`syncd snapshot`), from a PostgreSQL source to three targets: a PostgreSQL copy of a table of
some thirty types, compared column by column in PostgreSQL's own text form, and SQLite and
MariaDB copies of a narrower table of what those can hold. Rows exist before capture (the
snapshot carries them), are inserted after it and updated to each other's values (the stream
carries those). Published events bring high-precision numbers and JSON documents the same
way. Whatever a target cannot hold is dead-lettered alone, with its reason.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.capture.logical import slot_name
from tests.harness import REPO, Daemon, Received, StompClient, syncd
from tests.services import Broker, PostgresCluster, mariadb_database, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)
CONVERGE_TIMEOUT_S = 60
HIGH = "37037036703703703670.370370367"  # more digits than a float holds
HIGH_30_10 = "12345678901234567890.1234567891"
DOC_NUMBERS = "0.1000000000000000055511151231257827"  # the float 0.1, in full

# ------------------------------------------------------------------- the wide table (PG)

WIDE_COLUMNS = {
    "i2": "smallint",
    "i4": "integer",
    "i8": "bigint",
    "n": "numeric",
    "n30": "numeric(30, 10)",
    "r": "real",
    "d": "double precision",
    "b": "boolean",
    "t": "text",
    "vc": "varchar(20)",
    "ch": "char(5)",
    "raw": "bytea",
    "dt": "date",
    "tm": "time",
    "ttz": "timetz",
    "ts": "timestamp",
    "tstz": "timestamptz",
    "iv": "interval",
    "u": "uuid",
    "ip": "inet",
    "net": "cidr",
    "mac": "macaddr",
    "bits": "bit(4)",
    "vbits": "varbit",
    "m": "mood",
    "arr": "text[]",
    "iarr": "integer[]",
    "j": "json",
    "jb": "jsonb",
}
WIDE_DDL = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\n"
    "CREATE TABLE wide (id integer PRIMARY KEY, "
    + ", ".join(f"{c} {t}" for c, t in WIDE_COLUMNS.items())
    + ")"
)
TRICKY_TEXT = "tab\there \"double\" 'single' back\\slash ✓ 😀 \r\nnew line \\N %s %%"
# Each row's values as PostgreSQL literals (None: NULL; absent: NULL).
WIDE_ROWS: dict[int, dict[str, str | None]] = {
    1: {  # the low ends
        "i2": "-32768",
        "i4": "-2147483648",
        "i8": "-9223372036854775808",
        "n": "-" + HIGH,
        "n30": "-" + HIGH_30_10,
        "r": "-3.4028235e+38",
        "d": "-1.7976931348623157e+308",
        "b": "false",
        "t": TRICKY_TEXT,
        "vc": "ünïcødé ✓ 😀",
        "ch": "ab",
        "raw": "\\x00ff10",
        "dt": "4713-01-01 BC",
        "tm": "00:00:00",
        "ttz": "00:00:00+15:59",
        "ts": "4713-01-01 00:00:00 BC",
        "tstz": "1970-01-01 00:00:00+00",
        "iv": "-178000000 years",
        "u": "00000000-0000-0000-0000-000000000000",
        "ip": "::1",
        "net": "10.0.0.0/8",
        "mac": "00:00:00:00:00:00",
        "bits": "0000",
        "vbits": "0",
        "m": "sad",
        "arr": '{NULL,"a \\"quoted\\", comma",""," spaced ",NULL}',
        "iarr": "{-2147483648,NULL}",
        "j": '{"b":  1, "a": [2.50, ' + DOC_NUMBERS + '], "a": null}',
        "jb": '{"n": ' + HIGH + ', "x": 2.50, "e": 1e-7}',
    },
    2: {  # the high ends
        "i2": "32767",
        "i4": "2147483647",
        "i8": "9223372036854775807",
        "n": "9" * 120 + "." + "9" * 100,
        "n30": "99999999999999999999.9999999999",
        "r": "1e-45",  # the smallest subnormal real
        "d": "5e-324",  # the smallest subnormal double
        "b": "true",
        "t": "long ✓ " * 20_000,
        "vc": "x" * 20,
        "ch": "abcde",
        "raw": "\\x" + bytes(range(256)).hex(),
        "dt": "5874897-12-31",
        "tm": "24:00:00",
        "ttz": "24:00:00-15:59",
        "ts": "294276-12-31 23:59:59.999999",
        "tstz": "2026-06-30 23:59:59.999999+05:45",
        "iv": "178000000 years 11 mons 30 days 23:59:59.999999",
        "u": "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "ip": "2001:db8::8a2e:370:7334/64",
        "net": "2001:db8::/32",
        "mac": "ff:ff:ff:ff:ff:ff",
        "bits": "1111",
        "vbits": "1010101010101",
        "m": "happy",
        "arr": '{"back\\\\slash","{braces}","NULL","comma, here"}',
        "iarr": "{{1,2},{3,NULL}}",
        "j": '"a json string ✓"',
        "jb": '[1, "two", null, true, {"deep": [' + DOC_NUMBERS + ", 2.50, -0.0]}]",
    },
    3: {},  # NULL everywhere
    4: {  # empty and zero values
        "i2": "0",
        "i4": "0",
        "i8": "0",
        "n": "0",
        "n30": "0",
        "r": "-0",
        "d": "-0",
        "b": "false",
        "t": "",
        "vc": "",
        "ch": "",
        "raw": "\\x",
        "dt": "2000-01-01",
        "tm": "00:00:00.000001",
        "iv": "0",
        "vbits": "",
        "m": "ok",
        "arr": "{}",
        "iarr": "{}",
        "j": "{}",
        "jb": "[]",
    },
    5: {  # what only some types have
        "n": "NaN",
        "r": "NaN",
        "d": "Infinity",
        "dt": "infinity",
        "ts": "-infinity",
        "tstz": "infinity",
        "tm": "23:59:59.999999",
        "iv": "-1 days +00:00:00.000001",
        "arr": '{"NaN"}',
        "j": "  [1,2 ,  3]",
        "jb": '"a json string"',
    },
    6: {
        "n": "Infinity",
        "r": "-Infinity",
        "d": "-Infinity",
        "dt": "-infinity",
        "ts": "infinity",
        "tstz": "-infinity",
        "n30": "-0.0000000001",
        "j": "0.10",
        "jb": "0.10",
    },
    7: {"n": "-Infinity", "r": "Infinity", "d": "NaN", "j": "null", "jb": "null"},  # not NULL
    8: {"j": '"null"', "jb": '"null"', "t": "null"},
}

# ---------------------------------------------------- the narrow table (SQLite, MariaDB)

NARROW_COLUMNS = {
    "i8": "bigint",
    "n": "numeric",
    "n30": "numeric(30, 10)",
    "d": "double precision",
    "r": "real",
    "b": "boolean",
    "t": "text",
    "ts": "timestamp",
    "j": "json",
    "jb": "jsonb",
}
NARROW_DDL = (
    "CREATE TABLE {table} (id integer PRIMARY KEY, "
    + ", ".join(f"{c} {t}" for c, t in NARROW_COLUMNS.items())
    + ")"
)
# SQLite: declared types give the affinities the README's table describes; json as TEXT.
SQLITE_DDL = (
    "CREATE TABLE narrow (id INTEGER PRIMARY KEY, i8 INTEGER, n NUMERIC, n30 TEXT, d REAL, "
    "r REAL, b BOOLEAN, t TEXT, ts TEXT, j TEXT, jb TEXT)"
)
MARIADB_DDL = (
    "CREATE TABLE narrow (id INT PRIMARY KEY, i8 BIGINT, n DECIMAL(65, 30), "
    "n30 DECIMAL(30, 10), d DOUBLE, r FLOAT, b BOOLEAN, t LONGTEXT, ts DATETIME(6), j JSON, "
    "jb JSON) CHARACTER SET utf8mb4"
)
NARROW_ROWS: dict[int, dict[str, str | None]] = {
    1: {
        "i8": "-9223372036854775808",
        "n": "-12345678901234567890123456789012345.123456789012345678901234567891",
        "n30": "-" + HIGH_30_10,
        "d": "-1.7976931348623157e+308",
        "r": "-0.25",
        "b": "false",
        "t": TRICKY_TEXT,
        "ts": "1000-01-01 00:00:00",
        "j": '{"b":  1, "a": [2.50, ' + DOC_NUMBERS + "]}",
        "jb": '{"n": ' + HIGH + ', "x": 2.50}',
    },
    2: {
        "i8": "9223372036854775807",
        "n": "0.000000000000000000000000000001",
        "n30": "99999999999999999999.9999999999",
        "d": "5e-324",
        "r": "1.5",
        "b": "true",
        "t": "long ✓ " * 20_000,
        "ts": "9999-12-31 23:59:59.999999",
        "j": '"a json string"',
        "jb": '[1, "two", null, true, {"deep": [' + DOC_NUMBERS + "]}]",
    },
    3: {},
    4: {"i8": "0", "n": "0", "n30": "0", "d": "-0", "r": "0", "t": "", "j": "{}", "jb": "[]"},
    5: {"n": "NaN", "d": "NaN", "t": "NaN", "ts": "2026-11-30 12:34:56.789012"},
    6: {"n": "Infinity", "d": "-Infinity", "r": "Infinity"},
    7: {"ts": "10000-01-01 00:00:00", "n": "1.5"},  # past MariaDB's DATETIME
}
MARIADB_CANNOT_HOLD = {5: "mapping", 6: "mapping", 7: "rejected"}  # row id -> error class

MAPPINGS = """\
mappings:
  - name: wide
    source: {{system: {name}, table: public.wide}}
    target: {{database: pg, table: wide}}
    key: [id]
  - name: narrow_sqlite
    source: {{system: {name}, table: public.narrow}}
    target: {{database: lite, table: narrow}}
    key: [id]
  - name: narrow_mariadb
    source: {{system: {name}, table: public.narrow_m}}
    target: {{database: maria, table: narrow}}
    key: [id]
"""
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
"""
SOURCE = """\
sources:
  {name}:
    url: "{source}"
    capture: {mode}
    tables: [public.wide, public.narrow, public.narrow_m]
"""


@dataclass
class World:
    name: str
    config: Path
    dlq: str
    source: sa.Engine | None
    pg: sa.Engine
    lite: Path
    maria: sa.Engine
    client: StompClient


@pytest.fixture
def world(
    request: pytest.FixtureRequest, broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> Iterator[World]:
    mode: str = getattr(request, "param", "published")
    name = f"types_{mode}_{next(_runs)}"
    pg_url = postgres.create_database(f"{name}_target")
    pg = sa.create_engine(pg_url)
    with pg.begin() as conn:
        conn.exec_driver_sql(WIDE_DDL)
        conn.exec_driver_sql(NUMBERS_PG_DDL)
    lite = tmp_path / "lite.db"
    with sqlite3.connect(lite) as conn:
        conn.execute(SQLITE_DDL)
        conn.execute(NUMBERS_SQLITE_DDL)
    dlq = f"/queue/syncd.DLQ.{name}"
    with mariadb_database(name) as maria_url:
        maria = sa.create_engine(maria_url)
        with maria.begin() as conn:
            conn.exec_driver_sql(MARIADB_DDL)
            conn.exec_driver_sql(NUMBERS_MARIADB_DDL)
        (tmp_path / "mappings").mkdir()
        mappings = MAPPINGS.format(name=name) + NUMBERS_MAPPINGS.format(name=f"pub_{name}")
        (tmp_path / "mappings" / "types.yaml").write_text(mappings)
        config = tmp_path / "config.yaml"
        text = CONFIG.format(
            port=broker.port, dlq=dlq, pg=pg_url, lite=f"sqlite:///{lite}", maria=maria_url
        )
        source = None
        if mode != "published":
            source_url = postgres.create_database(f"{name}_source")
            source = sa.create_engine(source_url)
            with source.begin() as conn:
                conn.exec_driver_sql(WIDE_DDL)
                conn.exec_driver_sql(NARROW_DDL.format(table="narrow"))
                conn.exec_driver_sql(NARROW_DDL.format(table="narrow_m"))
            text += SOURCE.format(name=name, source=source_url, mode=mode)
        config.write_text(text)
        client = StompClient(broker.port)
        made = World(name, config, dlq, source, pg, lite, maria, client)
        try:
            yield made
        finally:
            client.close()
            if source is not None:
                result = syncd(
                    "capture", "uninstall", "-c", str(config), "--source", name, "--force"
                )
                assert result.returncode == 0, result.stderr
                source.dispose()
            maria.dispose()
            pg.dispose()


# ---------------------------------------------------------------------- reading the rows


def insert(conn: sa.Connection, table: str, columns: dict[str, str], rows: dict[int, Any]) -> None:
    names = ", ".join(columns)
    values = ", ".join(f"CAST(:{c} AS {t})" for c, t in columns.items())
    statement = sa.text(f"INSERT INTO {table} (id, {names}) VALUES (:id, {values})")
    conn.execute(
        statement, [{c: row.get(c) for c in columns} | {"id": k} for k, row in rows.items()]
    )


def rotate(conn: sa.Connection, table: str, columns: dict[str, str], ids: list[int]) -> None:
    """Row ids[i] takes every value of row ids[i + 1] (the last, of the first): each column
    of each row changes to another edge value, in one statement."""
    pairs = ", ".join(f"({a}, {b})" for a, b in zip(ids, ids[1:] + ids[:1], strict=True))
    sets = ", ".join(f"{c} = o.{c}" for c in columns)
    conn.exec_driver_sql(
        f"UPDATE {table} t SET {sets} FROM (VALUES {pairs}) AS p(id, other) "
        f"JOIN {table} o ON o.id = p.other WHERE t.id = p.id"
    )


def as_text(engine: sa.Engine, table: str, columns: dict[str, str]) -> dict[int, tuple[Any, ...]]:
    """Every row in PostgreSQL's own text form of each column (jsonb's is canonical)."""
    texts = ", ".join(f"{c}::text" for c in columns)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT id, {texts} FROM {table} ORDER BY id")
        return {row[0]: tuple(row[1:]) for row in rows}


def narrow_source(world: World, table: str) -> dict[int, dict[str, str | None]]:
    assert world.source is not None
    return {
        k: dict(zip(NARROW_COLUMNS, row, strict=True))
        for k, row in as_text(world.source, table, NARROW_COLUMNS).items()
    }


def sqlite_rows(world: World, table: str) -> dict[int, tuple[Any, ...]]:
    with sqlite3.connect(world.lite) as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(f"SELECT * FROM {table}")}


def mariadb_rows(world: World, table: str) -> dict[int, tuple[Any, ...]]:
    with world.maria.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.exec_driver_sql(f"SELECT * FROM {table}")}


def sqlite_numeric(text: str | None) -> Any:
    """What SQLite makes of a number's text in a NUMERIC column (its own conversion)."""
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE x (n NUMERIC)")
        conn.execute("INSERT INTO x VALUES (?)", (text,))
        return conn.execute("SELECT n FROM x").fetchone()[0]


def sqlite_real(text: str | None) -> Any:
    """A REAL column: the nearest float; ±Infinity as REAL; NaN as the text 'NaN'."""
    if text is None or text == "NaN":
        return text
    return float(text)


def same(got: Any, want: Any) -> bool:
    """Equal and of the same type, NaN equal to itself. (SQLite and MariaDB keep no -0: the
    sign of a zero is PostgreSQL's alone, compared there in text.)"""
    if isinstance(got, float) and isinstance(want, float) and math.isnan(want):
        return math.isnan(got)
    return bool(got == want) and type(got) is type(want)


def expected_sqlite(row: dict[str, str | None], mode: str) -> tuple[Any, ...]:
    ts = row["ts"]
    if ts is not None and mode == "outbox":
        ts = ts.replace(" ", "T", 1)  # to_jsonb's ISO 8601 text; logical sends PostgreSQL's
    return (
        None if row["i8"] is None else int(row["i8"]),
        sqlite_numeric(row["n"]),
        row["n30"],  # a TEXT column keeps the numeric's text exactly
        sqlite_real(row["d"]),
        sqlite_real(row["r"]),
        None if row["b"] is None else int(row["b"] == "true"),
        row["t"],
        ts,
        row["j"],
        row["jb"],
    )


def expected_mariadb(row: dict[str, str | None]) -> tuple[Any, ...]:
    def number(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    return (
        None if row["i8"] is None else int(row["i8"]),
        number(row["n"]),
        number(row["n30"]),
        None if row["d"] is None else float(row["d"]),
        None if row["r"] is None else float(row["r"]),
        None if row["b"] is None else int(row["b"] == "true"),
        row["t"],
        None if row["ts"] is None else datetime.fromisoformat(row["ts"]),
        row["j"],
        row["jb"],
    )


def mariadb_holds(row: dict[str, str | None]) -> bool:
    """No NaN or ±Infinity (MariaDB has none), no year past 9999 (its DATETIME's range)."""
    numbers = (row["n"], row["d"], row["r"])
    return not any(v in ("NaN", "Infinity", "-Infinity") for v in numbers) and not (
        row["ts"] or ""
    ).startswith("10000")


def differences(got: dict[int, tuple[Any, ...]], want: dict[int, tuple[Any, ...]]) -> list[str]:
    found = [f"missing rows {sorted(want.keys() - got.keys())}"] if want.keys() - got.keys() else []
    for key in sorted(want.keys() & got.keys()):
        for index, (g, w) in enumerate(zip(got[key], want[key], strict=True)):
            if not same(g, w):
                found.append(f"row {key} column {index + 1}: got {g!r:.200} want {w!r:.200}")
    return found


def dead_letters(world: World) -> list[Received]:
    return world.client.drain(world.dlq, idle_s=1.0)


# -------------------------------------------------------------------------- the capture test


@pytest.mark.parametrize("world", ["logical", "outbox"], indirect=True)
def test_every_column_type_arrives_exactly_through_snapshot_and_stream(world: World) -> None:
    assert world.source is not None
    mode = "logical" if "logical" in world.name else "outbox"
    with world.source.begin() as conn:
        insert(conn, "wide", WIDE_COLUMNS, WIDE_ROWS)
        insert(conn, "narrow", NARROW_COLUMNS, NARROW_ROWS)
        insert(conn, "narrow_m", NARROW_COLUMNS, NARROW_ROWS)
    result = syncd("capture", "install", "-c", str(world.config), "--source", world.name)
    assert result.returncode == 0, result.stderr
    daemon = Daemon(world.config).start()
    try:
        wait_until(
            lambda: "syncd applying" in daemon.log() and "capturing to" in daemon.log(),
            30,
            "the daemon to capture and apply",
        )
        snapshot = subprocess.run(
            [
                sys.executable,
                "-m",
                "syncd",
                "snapshot",
                "-c",
                str(world.config),
                "--source",
                world.name,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert snapshot.returncode == 0, snapshot.stdout + snapshot.stderr
        # The stream: every row again under a new key, then every row updated to another's
        # values (inserts and updates of every edge value).
        with world.source.begin() as conn:
            for table, columns, rows in (
                ("wide", WIDE_COLUMNS, WIDE_ROWS),
                ("narrow", NARROW_COLUMNS, NARROW_ROWS),
                ("narrow_m", NARROW_COLUMNS, NARROW_ROWS),
            ):
                insert(conn, table, columns, {k + 100: row for k, row in rows.items()})
                rotate(conn, table, columns, sorted(rows))
        want_wide = as_text(world.source, "wide", WIDE_COLUMNS)

        def wide_equal() -> bool:
            return as_text(world.pg, "wide", WIDE_COLUMNS) == want_wide

        eventually(wide_equal, CONVERGE_TIMEOUT_S)  # then the differences, if any, are shown
        assert differences(as_text(world.pg, "wide", WIDE_COLUMNS), want_wide) == []

        narrow = narrow_source(world, "narrow")
        want_lite = {k: expected_sqlite(row, mode) for k, row in narrow.items()}
        wait_until(
            lambda: len(sqlite_rows(world, "narrow")) == len(want_lite), 30, "the SQLite copy"
        )
        assert differences(sqlite_rows(world, "narrow"), want_lite) == []

        # MariaDB: the rows it can hold, exactly; each event it cannot, dead-lettered alone.
        narrow_m = narrow_source(world, "narrow_m")
        # A row whose newest values MariaDB cannot hold keeps what it held before.
        holdable = {k: row for k, row in narrow_m.items() if mariadb_holds(row)}
        want_maria = {k: expected_mariadb(row) for k, row in holdable.items()}

        def maria_done() -> bool:
            return differences(mariadb_rows(world, "narrow"), want_maria) == []

        eventually(maria_done, 30)
        assert differences(mariadb_rows(world, "narrow"), want_maria) == []
        letters = dead_letters(world)
        # (key, class): a mapping error names the key in its text, a rejection in a header.
        classes = {
            (
                r.headers.get("syncd-key") or r.headers["syncd-error"].split()[3].rstrip(":"),
                r.headers["syncd-error-class"],
            )
            for r in letters
        }
        for key, error_class in MARIADB_CANNOT_HOLD.items():
            # The row itself (snapshot), its copy (insert) and the row updated to its values.
            for holder in (key, key + 100, _rotated_into(key, sorted(NARROW_ROWS))):
                assert (f"[{holder}]", error_class) in classes, (holder, sorted(classes))
        assert all(
            "narrow_mariadb" in (r.headers.get("syncd-mapping") or r.headers["syncd-error"])
            for r in letters
        ), [r.headers for r in letters]
        errors = [r.headers["syncd-error"] for r in letters]
        assert any("key [5]: maria.narrow column " in e for e in errors), errors
        # An integer column refuses it as out of its range; another column, as NaN.
        assert any(
            "MariaDB/MySQL cannot hold NaN" in e or "nan does not fit" in e for e in errors
        ), errors
    finally:
        daemon.stop()
    if mode == "logical":
        wait_until(lambda: not _slot_active(world), 15, "the slot to be released")


def eventually(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.3)


def _rotated_into(key: int, ids: list[int]) -> int:
    """The row whose update gave it row ``key``'s values (see ``rotate``)."""
    return ids[ids.index(key) - 1]


def _slot_active(world: World) -> bool:
    assert world.source is not None
    with world.source.connect() as conn:
        query = "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name = %(s)s"
        return bool(conn.exec_driver_sql(query, {"s": slot_name(world.name)}).scalar())


# ------------------------------------------------------------------- the published events

NUMBERS_PG_DDL = (
    "CREATE TABLE numbers (id integer PRIMARY KEY, n numeric, n30 numeric(30, 10), "
    "d double precision, i integer, j json, jb jsonb)"
)
NUMBERS_SQLITE_DDL = (
    "CREATE TABLE numbers (id INTEGER PRIMARY KEY, n NUMERIC, n30 TEXT, d REAL, i INTEGER, "
    "j TEXT, jb TEXT)"
)
NUMBERS_MARIADB_DDL = (
    "CREATE TABLE numbers (id INT PRIMARY KEY, n DECIMAL(65, 30), n30 DECIMAL(30, 10), "
    "d DOUBLE, i INT, j JSON, jb JSON)"
)
NUMBERS_MAPPINGS = """\
  - name: numbers_pg
    source: {{system: {name}, table: numbers_pg}}
    target: {{database: pg, table: numbers}}
    key: [id]
  - name: numbers_sqlite
    source: {{system: {name}, table: numbers_sqlite}}
    target: {{database: lite, table: numbers}}
    key: [id]
  - name: numbers_mariadb
    source: {{system: {name}, table: numbers_mariadb}}
    target: {{database: maria, table: numbers}}
    key: [id]
"""
DOCUMENT = '{"x": ' + DOC_NUMBERS + ', "y": 2.50, "z": [1e-7, 0.0000000000, -0.0]}'
# The rows as JSON text, exactly as a publisher writes them (Python's json would lose digits).
PUBLISHED = {
    1: '{"id": 1, "n": ' + HIGH + ', "n30": ' + HIGH_30_10 + ', "d": 0.1, "i": 7, '
    '"j": ' + DOCUMENT + ', "jb": ' + DOCUMENT + "}",
    # A string for a json column is the document's text (Debezium's io.debezium.data.Json).
    2: '{"id": 2, "n": 0.0000001, "n30": 0.0000000000, "d": -0.0, '
    '"j": "{\\"b\\":  1, \\"a\\": 2, \\"a\\": 3}", "jb": "{\\"b\\":  1, \\"a\\": 2.50}"}',
    3: '{"id": 3, "n": Infinity, "d": NaN, "j": 2.50, "jb": "2.50"}',  # Python's json literals
    4: '{"id": 4, "i": NaN}',  # an integer holds no NaN: dead-lettered everywhere but SQLite
    5: '{"id": 5, "j": {"x": [NaN]}}',  # no JSON document holds NaN: a decode dead letter
}
UPDATE_1 = '{"id": 1, "n": -' + HIGH + ', "n30": -' + HIGH_30_10 + ', "d": 1e-320}'


def published_event(system: str, table: str, seq: int, op: str, row: str) -> str:
    return (
        f'{{"op": "{op}", "after": {row}, "source": {{"name": "{system}", '
        f'"schema": null, "table": "{table}", "seq": {seq}}}}}'
    )


def test_published_numbers_and_json_documents_arrive_exactly(world: World) -> None:
    system = f"pub_{world.name}"
    queue = f"/queue/syncd.{system}"
    daemon = Daemon(world.config).start()
    try:
        wait_until(lambda: "syncd applying" in daemon.log(), 30, "the daemon to apply")
        for table in ("numbers_pg", "numbers_sqlite", "numbers_mariadb"):
            events = [published_event(system, table, k, "c", row) for k, row in PUBLISHED.items()]
            events.append(published_event(system, table, 10, "u", UPDATE_1))
            for body in events:
                world.client.send(queue, body)
        world.client.flush()
        wait_until(
            lambda: (
                _count(world.pg, "numbers") == 3
                and len(sqlite_rows(world, "numbers")) == 4
                and _count(world.maria, "numbers") == 2
            ),
            30,
            "the published rows",
        )
        with world.pg.connect() as conn:
            pg_rows = {
                row[0]: tuple(row[1:])
                for row in conn.exec_driver_sql(
                    "SELECT id, n::text, n30::text, d::text, i::text, j::text, jb::text, "
                    "jb = CAST(%(doc)s AS jsonb) FROM numbers ORDER BY id",
                    {"doc": DOCUMENT},
                )
            }
        spaced = '{"x": ' + DOC_NUMBERS + ', "y": 2.50, "z": [0.0000001, 0.0000000000, -0.0]}'
        canonical = '{"x": ' + DOC_NUMBERS + ', "y": 2.50, "z": [0.0000001, 0.0000000000, 0.0]}'
        assert pg_rows == {
            # The update's numbers; the document as syncd writes a parsed one: jsonb spacing,
            # every digit and scale, plain digits for 1e-7.
            1: ("-" + HIGH, "-" + HIGH_30_10, "1e-320", "7", spaced, canonical, True),
            2: (
                "0.0000001",
                "0.0000000000",
                "-0",
                None,
                '{"b":  1, "a": 2, "a": 3}',
                '{"a": 2.50, "b": 1}',
                False,
            ),
            3: ("Infinity", None, "NaN", None, "2.50", "2.50", False),
        }
        lite = sqlite_rows(world, "numbers")
        assert (
            differences(
                lite,
                {
                    1: (sqlite_numeric("-" + HIGH), "-" + HIGH_30_10, 1e-320, 7, spaced, spaced),
                    2: (
                        1e-07,
                        "0.0000000000",
                        -0.0,
                        None,
                        '{"b":  1, "a": 2, "a": 3}',
                        '{"b":  1, "a": 2.50}',
                    ),
                    # TEXT keeps the digits; NaN and ±Infinity are text outside REAL.
                    3: ("Infinity", None, "NaN", None, "2.50", "2.50"),
                    4: (None, None, None, "NaN", None, None),
                },
            )
            == []
        )
        maria = mariadb_rows(world, "numbers")
        assert maria == {
            1: (Decimal("-" + HIGH), Decimal("-" + HIGH_30_10), 1e-320, 7, spaced, spaced),
            2: (
                Decimal("1E-7"),
                Decimal("0E-10"),
                -0.0,
                None,
                '{"b":  1, "a": 2, "a": 3}',
                '{"b":  1, "a": 2.50}',
            ),
        }
        letters = dead_letters(world)
        decode = [r for r in letters if r.headers.get("syncd-error-class") == "decode"]
        assert len(decode) == 3
        assert all("NaN or Infinity" in r.headers["syncd-error"] for r in decode)
        mapping_errors = sorted(
            r.headers["syncd-error"] for r in letters if r.headers["syncd-error-class"] == "mapping"
        )
        assert len(mapping_errors) == 3, mapping_errors
        for error, (mapping, column, value) in zip(
            mapping_errors,
            [
                ("numbers_mariadb", "n", "Infinity"),  # key [3]
                ("numbers_mariadb", "i", "NaN"),  # key [4]
                ("numbers_pg", "i", "NaN"),
            ],
            strict=True,
        ):
            assert error.startswith(f"mapping {mapping} key ") and f"column {column}" in error
            # An integer column refuses it as outside its range (syncd.values), others as NaN.
            out_of_range = column == "i" and f"{value.lower()} does not fit" in error
            assert f"cannot hold {value}" in error or out_of_range, error
        assert len(letters) == 6, [r.headers for r in letters]
    finally:
        daemon.stop()


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def test_json_text_of_published_rows_is_valid_json() -> None:
    """The fixtures above are what a publisher sends: JSON that Python's json reads too."""
    for row in [*PUBLISHED.values(), UPDATE_1]:
        json.loads(row)
