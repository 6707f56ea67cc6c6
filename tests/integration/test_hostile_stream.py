"""A stream of hostile and malformed messages among good ones, through the real `syncd run`.

The same daemon process takes it all: every bad message is dead-lettered with a reason (none
as crash-loop), every good event is applied, and nothing a message says is run as SQL.
The hostile bodies are those the fuzzer keeps (tests/data/hostile/) and a few more.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests import hostile
from tests.harness import Daemon, StompClient, write_config
from tests.history import MAPPING, TABLE, Source, as_messages, random_history
from tests.services import Broker, PostgresCluster, mariadb_database, wait_until

_runs = itertools.count(1)

# Every column of the event, named as the event names it: event text reaches SQL identifiers.
RAW_MAPPING = """
  - name: raw
    source: {system: SYSTEM, table: hostile_customers}
    target: {database: warehouse, table: raw_customer}
    key: [id]
"""
RAW_TABLE = """CREATE TABLE raw_customer (id BIGINT PRIMARY KEY, name TEXT, email TEXT,
               score INTEGER, small SMALLINT, count INTEGER, ratio DOUBLE PRECISION, doc DOC)"""
DOC_TYPE = {"postgresql": "JSONB", "sqlite": "TEXT", "mariadb": "JSON"}
BAIT_TABLE = "CREATE TABLE t (id INTEGER)"


@dataclass
class Stream:
    config: Path
    system: str
    queue: str
    dlq: str
    client: StompClient
    engine: sa.Engine
    dialect: str


@pytest.fixture(params=["postgresql", "sqlite", "mariadb"])
def stream(request: pytest.FixtureRequest, broker: Broker, tmp_path: Path) -> Iterator[Stream]:
    run = next(_runs)
    system = f"hostile{run}"
    dialect = request.param
    with ExitStack() as stack:
        if dialect == "postgresql":
            cluster: PostgresCluster = request.getfixturevalue("postgres")
            url = cluster.create_database(f"hostile_{run}")
        elif dialect == "sqlite":
            url = f"sqlite:///{tmp_path / 'target.db'}"
        else:
            url = stack.enter_context(mariadb_database(f"syncd_hostile_{os.getpid()}_{run}"))
        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        with engine.begin() as conn:
            for statement in (TABLE, RAW_TABLE.replace("DOC", DOC_TYPE[dialect]), BAIT_TABLE):
                conn.exec_driver_sql(statement)
        dlq = f"/queue/syncd.DLQ.hostile{run}"
        mappings = (MAPPING + RAW_MAPPING).replace("SYSTEM", system)
        config = write_config(tmp_path, broker.port, url, mappings, dead_letter_queue=dlq)
        client = StompClient(broker.port)
        stack.callback(client.close)
        yield Stream(config, system, f"/queue/syncd.{system}", dlq, client, engine, dialect)


def _event(seq: int, after: Any, **fields: Any) -> dict[str, Any]:
    source = {"name": "crm", "table": "customers", "seq": seq}
    return {"op": "c", "after": after, "source": source, **fields}


# More hostile bodies, beyond the fuzzer's: name -> body. All must be dead-lettered.
MORE_BAD: dict[str, bytes] = {
    "score-past-integer": json.dumps(_event(30, {"id": 30, "score": 10**30})).encode(),
    "small-past-smallint": json.dumps(_event(31, {"id": 31, "small": 40000})).encode(),
    "nan-in-an-integer-column": b'{"op":"c","after":{"id":32,"score":NaN},'
    b'"source":{"name":"crm","table":"customers","seq":32}}',
    "nul-in-jsonb": json.dumps(_event(33, {"id": 33, "doc": {"a": "\x00"}})).encode(),
    "source-is-text": json.dumps({"op": "c", "after": {"id": 34}, "source": "crm"}).encode(),
    "after-is-a-number": json.dumps(_event(35, 35)).encode(),
    "huge-number-literal": b'{"op":"c","after":{"id":36,"count":' + b"9" * 5000 + b"}}",
    "sql-in-a-key": json.dumps(_event(37, {"id": "1); DROP TABLE t; --"})).encode(),
    "binary-noise": bytes(range(256)),
    "text-column-name-sql": json.dumps(
        _event(38, {"id": 38, "name); DROP TABLE t; --": 1})
    ).encode(),
}
# Their fate is the numbers' encoding's to decide (stored, or dead-lettered): only that the
# daemon lives through them is checked.
EITHER_WAY: dict[str, bytes] = {
    "infinity-in-jsonb": b'{"op":"c","after":{"id":40,"doc":[Infinity, -Infinity]},'
    b'"source":{"name":"crm","table":"customers","seq":40}}',
    "nan-in-a-float-column": b'{"op":"c","after":{"id":41,"ratio":NaN},'
    b'"source":{"name":"crm","table":"customers","seq":41}}',
    # Decodes, but encoding it again for the driver may pass the recursion limit: rejected.
    "nested-near-the-decoder-limit": b'{"op":"c","after":{"id":42,"doc":'
    + b"[" * 980
    + b"]" * 980
    + b'},"source":{"name":"crm","table":"customers","seq":42}}',
}
# What SQLite and MariaDB can store, unlike PostgreSQL: NULs; in SQLite any number in any
# column (README "Types": integers past 64 bits as their digits, NaN as the text 'NaN') and
# text in its BIGINT column (MariaDB refuses it: rejected).
STORED_BY = {
    "sqlite": {
        "nul-in-text",
        "nul-in-key",
        "nul-in-jsonb",
        "small-past-smallint",
        "sql-in-a-key",
        "duplicate-key-last-past-bigint",
        "integer-key-past-bigint",
        "integer-past-bigint",
        "nan-in-an-integer-column",
        "score-past-integer",
    },
    "mariadb": {"nul-in-text", "nul-in-jsonb"},
}
GOOD_IN_FILES = {"good-with-a-bom": 11, "good-duplicate-keys-last-wins": 12,
                 "good-surrogate-pair": 13, "good-sql-looking-value": 14,
                 "surrogate-in-array-event-table": 15}  # fmt: skip


def _hostile_bodies(system: str) -> dict[str, bytes]:
    """Every hostile body, its events moved to this run's system and the raw mapping's table."""
    bodies = {p.name.split(".")[0]: p.read_bytes() for p in hostile.regression_bodies()}
    bodies.update(MORE_BAD)
    bodies.update(EITHER_WAY)
    return {
        name: body.replace(b'"crm"', json.dumps(system).encode()).replace(
            b'"customers"', b'"hostile_customers"'
        )
        for name, body in bodies.items()
    }


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_hostile_messages_among_good_ones_never_stop_the_daemon(stream: Stream) -> None:
    source = Source(stream.system)
    random_history(source, keys=40, operations=400, seed=19)
    good = as_messages(source.events, random.Random(5))
    bad = _hostile_bodies(stream.system)
    rng = random.Random(23)
    sends: list[tuple[str | None, bytes]] = [(None, json.dumps(m).encode()) for m in good]
    for name, body in bad.items():
        sends.insert(rng.randrange(len(sends) + 1), (name, body))
    tables_before = _tables(stream.engine)

    daemon = Daemon(stream.config).start()
    try:
        assert daemon.process is not None
        pid = daemon.process.pid
        for name, body in sends:
            stream.client.send(stream.queue, body, **({"hostile-name": name} if name else {}))
        stream.client.flush()
        expected = source.expected()
        wait_until(lambda: _target(stream) == expected, 90, "every good event to be applied")
        raw_ids = set(GOOD_IN_FILES.values())
        wait_until(lambda: raw_ids <= _raw_ids(stream), 30, "the good hostile-table events")

        either_way = set(EITHER_WAY) | STORED_BY.get(stream.dialect, set())
        letters = _drain_until(
            stream, {n for n in bad if n not in either_way and not n.startswith("good-")}
        )
        for letter in letters:
            print(letter.headers.get("hostile-name"), letter.headers["syncd-error-class"],
                  letter.headers["syncd-error"][:150])  # fmt: skip
            assert letter.headers["syncd-error-class"] != "crash-loop", letter.headers
            assert letter.headers["syncd-error"], letter.headers
        assert daemon.running and daemon.process.pid == pid, daemon.log()
        assert "Traceback" not in daemon.log(), daemon.log()
        # Nothing dropped, nothing created but syncd's own positions table.
        assert _tables(stream.engine) == tables_before | {"syncd_positions"}
        assert _target(stream) == expected  # and nothing moved afterwards
    finally:
        assert daemon.stop() == 0, daemon.log()


def _drain_until(stream: Stream, names: set[str]) -> list[Any]:
    """The dead letters, drained until one has come for each of ``names``."""
    letters: list[Any] = []

    def every_name_dead_lettered() -> bool:
        letters.extend(stream.client.drain(stream.dlq, idle_s=0.5))
        return names <= {m.headers.get("hostile-name") for m in letters}

    try:
        wait_until(every_name_dead_lettered, 60, "a dead letter for each bad message")
    except AssertionError:
        got = {m.headers.get("hostile-name") for m in letters}
        raise AssertionError(f"not dead-lettered: {sorted(names - got)}") from None
    return letters


def _target(stream: Stream) -> list[tuple[Any, ...]]:
    with stream.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM dim_customer ORDER BY 1")]


def _raw_ids(stream: Stream) -> set[int]:
    with stream.engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT id FROM raw_customer").scalars())
