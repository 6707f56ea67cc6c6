"""`syncd verify` against a running daemon: a PostgreSQL source captured (logical and outbox)
into a PostgreSQL target, with a live stream of updates, direct corruption of the target, and
`--repair`.

One daemon per capture mode serves every test of the module (the set-up is most of the cost);
each test leaves the target equal to the source again.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.commands import cli
from syncd.config import load_config
from syncd.mapping import load_mappings
from syncd.verify import run as verify_run
from tests.harness import Daemon, syncd
from tests.services import Broker, PostgresCluster, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)
ROWS = 1000
STREAM_KEYS = 200  # the live stream changes ids 1..STREAM_KEYS; corruption stays above
SYNC_TIMEOUT_S = 60

SOURCE_SCHEMA = """
CREATE TABLE items (id integer PRIMARY KEY, name text, region text, price numeric(12, 2),
                    amount numeric, doc jsonb, raw bytea, at timestamptz, flag boolean);
CREATE TABLE pairs (a integer, b text, v text, PRIMARY KEY (a, b));
"""
TARGET_SCHEMA = """
CREATE TABLE item_copy (id integer PRIMARY KEY, name text, region text, price numeric(12, 2),
                        amount numeric, doc jsonb, raw bytea, at timestamptz, flag boolean);
CREATE TABLE item_soft (id integer PRIMARY KEY, name text, deleted_at timestamptz);
CREATE TABLE item_eu (item_id integer PRIMARY KEY, name_upper text, region text, tag text);
CREATE TABLE pair_copy (a integer, b text, v text, PRIMARY KEY (a, b));
"""
MAPPINGS = """\
mappings:
  - name: items
    source: {{system: {name}, table: public.items}}
    target: {{database: warehouse, table: item_copy}}
    key: [id]
  - name: items_soft
    source: {{system: {name}, table: public.items}}
    target: {{database: warehouse, table: item_soft}}
    key: [id]
    columns: {{id: id, name: name}}
    on_delete: {{soft: deleted_at}}
  - name: items_eu
    source: {{system: {name}, table: public.items}}
    target: {{database: warehouse, table: item_eu}}
    key: [id]
    where: "region = 'EU'"
    columns:
      id: item_id
      name: {{column: name_upper, transform: upper}}
      region: region
    set: {{tag: eu}}
  - name: pairs
    source: {{system: {name}, table: public.pairs}}
    target: {{database: warehouse, table: pair_copy}}
    key: [a, b]
  - name: published
    source: {{system: elsewhere, table: public.items}}
    target: {{database: warehouse, table: item_copy}}
    key: [id]
"""
CONFIG = """\
broker:
  hosts: ["127.0.0.1:{port}"]
  heartbeat_ms: 2000
  dead_letter_queue: /queue/syncd.DLQ.{name}
state_dir: state/
retry: {{initial_backoff_ms: 100, max_backoff_ms: 1000}}
databases:
  warehouse: {{url: "{target}"}}
mappings: mappings/
sources:
  {name}:
    url: "{source}"
    capture: {mode}
    tables: [public.items, public.pairs]
"""
# Values that a careless canonical form gets wrong.
ODD_TEXT = [
    "",
    " lead",
    "trail ",
    "tab\there",
    "quote'\"",
    "back\\slash",
    "straße",
    "😀 emoji",
    "line\nbreak",
    "%_like",
    "NULL",
    "[1]",
    "ümlaut",
    "a,b",
    "Z",
    "a",
]
ODD_PAIRS = [(1, t) for t in ODD_TEXT] + [(2, "x"), (-2147483648, "min"), (2147483647, "max")]


@dataclass
class World:
    mode: str
    name: str
    config: Path
    source: sa.Engine
    target: sa.Engine
    daemon: Daemon
    corrupted: list[str] = field(default_factory=list)

    def source_sql(self, *statements: str, **params: Any) -> None:
        with self.source.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def target_sql(self, *statements: str, **params: Any) -> None:
        with self.target.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def verify(self, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
        result = syncd("verify", "-c", str(self.config), "--json", *args, timeout_s=240)
        reports = {}
        for line in result.stdout.splitlines():
            record = json.loads(line)
            reports[record["mapping"]] = record
        return result.returncode, reports, result.stderr

    def items_equal(self) -> bool:
        """The target table item_copy holds exactly the source's items (checked by SQL)."""
        query = (
            "SELECT id, name, region, price, amount, doc::text, raw, at, flag FROM {} ORDER BY id"
        )
        with self.source.connect() as conn:
            source = conn.execute(sa.text(query.format("items"))).all()
        with self.target.connect() as conn:
            target = conn.execute(sa.text(query.format("item_copy"))).all()
        return source == target

    def synced(self) -> bool:
        with self.source.connect() as conn:
            want = conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
            pairs = conn.execute(sa.text("SELECT count(*) FROM pairs")).scalar_one()
        with self.target.connect() as conn:
            have = conn.execute(sa.text("SELECT count(*) FROM item_copy")).scalar_one()
            have_pairs = conn.execute(sa.text("SELECT count(*) FROM pair_copy")).scalar_one()
        return want == have and pairs == have_pairs and self.items_equal()


class Stream:
    """A thread updating the source's first STREAM_KEYS items until stopped: names, prices,
    the region the filter reads, and deletes and re-inserts."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.stopping = threading.Event()
        self.changes = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def __enter__(self) -> Stream:
        self.thread.start()
        wait_until(lambda: self.changes >= 20 or bool(self.errors), 30, "the stream to start")
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(30)
        assert not self.errors, f"the stream failed: {self.errors[0]!r}"

    def _run(self) -> None:
        rng = random.Random(7)
        try:
            while not self.stopping.is_set():
                key = rng.randint(1, STREAM_KEYS)
                with self.engine.begin() as conn:
                    if rng.random() < 0.1:
                        conn.execute(sa.text("DELETE FROM items WHERE id = :id"), {"id": key})
                        conn.execute(sa.text(_INSERT_ITEM), _item(key, rng))
                    else:
                        conn.execute(
                            sa.text(
                                "UPDATE items SET name = :name, price = :price, region = :region,"
                                " at = now() WHERE id = :id"
                            ),
                            {
                                "id": key,
                                "name": f"n{rng.randint(0, 10**6)}",
                                "price": f"{rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}",
                                "region": rng.choice(["EU", "US"]),
                            },
                        )
                self.changes += 1
                time.sleep(0.004)
        except BaseException as error:
            self.errors.append(error)


_INSERT_ITEM = (
    "INSERT INTO items (id, name, region, price, amount, doc, raw, at, flag) VALUES "
    "(:id, :name, :region, :price, CAST(:amount AS numeric), CAST(:doc AS jsonb), :raw, "
    "CAST(:at AS timestamptz), :flag)"
)


def _item(key: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": key,
        "name": ODD_TEXT[key % len(ODD_TEXT)] + str(key) if key % 7 else None,
        "region": "EU" if key % 3 == 0 else "US",
        "price": f"{key}.{key % 100:02d}" if key % 11 else None,
        "amount": ["1.10", "1.1", "0.000000000001", "123456789012345678901234567890.5", "-0"][
            key % 5
        ],
        "doc": json.dumps({"b": [1, 2.50, None], "a": {"z": "ü", "y": key}}) if key % 4 else None,
        "raw": bytes([key % 256, 0, 255, (key * 7) % 256]) if key % 6 else None,
        "at": ["2024-02-29 23:59:59.999999+05:30", "1970-01-01 00:00:00+00", "infinity"][key % 3],
        "flag": [True, False, None][key % 3],
    }


@pytest.fixture(scope="module", params=["logical", "outbox"])
def world(
    request: pytest.FixtureRequest,
    broker: Broker,
    postgres: PostgresCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    mode = request.param
    name = f"verify_{mode}_{next(_runs)}"
    directory = tmp_path_factory.mktemp(name)
    source_url = postgres.create_database(f"{name}_source")
    target_url = postgres.create_database(f"{name}_target")
    source, target = sa.create_engine(source_url), sa.create_engine(target_url)
    with source.begin() as conn:
        conn.exec_driver_sql(SOURCE_SCHEMA)
    with target.begin() as conn:
        conn.exec_driver_sql(TARGET_SCHEMA)
    (directory / "mappings").mkdir()
    (directory / "mappings" / "verify.yaml").write_text(MAPPINGS.format(name=name))
    config = directory / "config.yaml"
    config.write_text(
        CONFIG.format(port=broker.port, name=name, target=target_url, source=source_url, mode=mode)
    )
    installed = syncd("capture", "install", "-c", str(config), "--source", name)
    assert installed.returncode == 0, installed.stderr
    daemon = Daemon(config).start()
    made = World(mode, name, config, source, target, daemon)
    try:
        rng = random.Random(1)
        with source.begin() as conn:
            conn.execute(sa.text(_INSERT_ITEM), [_item(key, rng) for key in range(1, ROWS + 1)])
            conn.execute(
                sa.text("INSERT INTO pairs VALUES (:a, :b, :v)"),
                [{"a": a, "b": b, "v": f"v{i}"} for i, (a, b) in enumerate(ODD_PAIRS)],
            )
        wait_until(made.synced, SYNC_TIMEOUT_S, "the target to be synced")
        yield made
    finally:
        if daemon.running:
            daemon.stop()
        if mode == "logical":
            wait_until(lambda: _slot_free(source, name), 15, "the slot to be released")
        syncd("capture", "uninstall", "-c", str(config), "--source", name, "--force")
        source.dispose()
        target.dispose()


def _slot_free(engine: sa.Engine, name: str) -> bool:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = :s AND active"
        return conn.execute(sa.text(query), {"s": f"syncd_{name}"}).scalar_one() == 0


def _counts(record: dict[str, Any]) -> tuple[int, int, int]:
    return record["missing"], record["extra"], record["different"]


# ----------------------------------------------------------------------------------- the tests


def test_equal_tables_verify_equal_with_every_edge_value(world: World) -> None:
    code, reports, stderr = world.verify()
    assert code == 0, stderr
    assert set(reports) == {"items", "items_soft", "items_eu", "pairs"}  # not "published"
    assert reports["items"]["compared"] == ROWS
    assert reports["items_eu"]["compared"] == ROWS // 3  # the filter keeps region EU
    assert reports["pairs"]["compared"] == len(ODD_PAIRS)
    for record in reports.values():
        assert _counts(record) == (0, 0, 0), record
        assert record["samples"] == {"missing": [], "extra": [], "different": []}


def test_live_stream_is_not_a_difference_and_repair_wins_over_corruption(world: World) -> None:
    with Stream(world.source) as stream:
        code, reports, stderr = world.verify("--mapping", "items", "--mapping", "items_eu")
        assert code == 0, (reports, stderr)
        assert _counts(reports["items"]) == (0, 0, 0)
        world.target_sql(
            "UPDATE item_copy SET name = 'corrupt' WHERE id IN (601, 602)",
            "UPDATE item_copy SET price = price + 0.01 WHERE id = 603",
            "DELETE FROM item_copy WHERE id IN (604, 605)",
            "INSERT INTO item_copy (id, name) VALUES (900001, 'x'), (900002, 'x'), (900003, 'x'), "
            "(900004, 'x')",
        )
        code, reports, stderr = world.verify("--mapping", "items")
        assert code == 5, stderr
        record = reports["items"]
        assert _counts(record) == (2, 4, 3), record
        assert record["compared"] >= ROWS - STREAM_KEYS
        assert record["samples"]["missing"] == [{"id": 604}, {"id": 605}]
        assert record["samples"]["extra"] == [{"id": 900001 + i} for i in range(4)]
        assert record["samples"]["different"] == [{"id": 601}, {"id": 602}, {"id": 603}]
        # Keys the stream is changing too: a corrective event must never hide a newer change
        # (the target must end equal once the stream stops, below).
        world.target_sql("UPDATE item_copy SET name = 'corrupt' WHERE id BETWEEN 5 AND 14")
        code, reports, stderr = world.verify("--mapping", "items", "--repair")
        assert code == 0, (reports, stderr)
        assert reports["items"]["repaired"]["events"] >= 9
        assert (reports["items"]["repaired"]["missing"], reports["items"]["repaired"]["extra"]) == (
            2,
            4,
        )
        assert stream.changes > 50
    wait_until(world.synced, SYNC_TIMEOUT_S, "the target to equal the source")
    code, reports, stderr = world.verify()
    assert code == 0, (reports, stderr)


LOGICAL_ONLY = pytest.mark.parametrize("world", ["logical"], indirect=True)


@LOGICAL_ONLY  # the capture mode changes only how rows are read: the stream test covers both
def test_soft_deletes_filters_transforms_and_odd_keys_are_followed(world: World) -> None:
    world.source_sql("DELETE FROM items WHERE id = 701")
    wait_until(lambda: _soft_deleted(world, 701), SYNC_TIMEOUT_S, "the soft delete")
    chosen = ("--mapping", "items_soft", "--mapping", "items_eu", "--mapping", "pairs")
    code, reports, stderr = world.verify(*chosen)
    assert code == 0, (reports, stderr)  # a soft-deleted target row equals a missing source row
    world.target_sql(
        "UPDATE item_soft SET deleted_at = NULL WHERE id = 701",  # back from the dead: extra
        "UPDATE item_soft SET deleted_at = now() WHERE id = 702",  # gone too early: missing
        "INSERT INTO item_eu VALUES (707, 'X', 'US', 'eu')",  # a row the filter keeps out
        "UPDATE item_eu SET name_upper = lower(name_upper) WHERE item_id = 738",  # transformed
        "UPDATE item_eu SET tag = 'us' WHERE item_id = 723",  # a set: constant
        "UPDATE pair_copy SET v = 'changed' WHERE a = 1 AND b = 'straße'",
        "DELETE FROM pair_copy WHERE a = 1 AND b = ''",
        "INSERT INTO pair_copy VALUES (1, 'quote''\"extra', 'v')",
        # Equal values spelled differently are no difference: jsonb key order and spacing.
        "UPDATE item_copy SET doc = CAST(doc::text AS jsonb) WHERE id = 1",
    )
    code, reports, stderr = world.verify(*chosen, "--mapping", "items")
    assert code == 5, stderr
    assert _counts(reports["items"]) == (0, 0, 0)
    assert _counts(reports["items_soft"]) == (1, 1, 0), reports["items_soft"]
    assert _counts(reports["items_eu"]) == (0, 1, 2), reports["items_eu"]
    assert reports["items_eu"]["samples"]["extra"] == [{"id": 707}]
    record = reports["pairs"]
    assert _counts(record) == (1, 1, 1), record
    assert record["samples"]["missing"] == [{"a": 1, "b": ""}]
    assert record["samples"]["extra"] == [{"a": 1, "b": "quote'\"extra"}]
    assert record["samples"]["different"] == [{"a": 1, "b": "straße"}]
    code, reports, stderr = world.verify(*chosen, "--repair")
    assert code == 0, (reports, stderr)
    with world.target.connect() as conn:
        kept_out = "SELECT count(*) FROM item_eu WHERE item_id = 707"
        assert conn.execute(sa.text(kept_out)).scalar() == 0
        deleted = "SELECT deleted_at IS NOT NULL FROM item_soft WHERE id = :id"
        assert conn.execute(sa.text(deleted), {"id": 701}).scalar() is True
        assert conn.execute(sa.text(deleted), {"id": 702}).scalar() is False
    world.source_sql(_INSERT_ITEM, **_item(701, random.Random(1)))  # as it was
    wait_until(world.synced, SYNC_TIMEOUT_S, "the target to equal the source")


@LOGICAL_ONLY
def test_small_chunks_bisect_to_the_same_differences(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, with chunks of 300 rows and leaves of 8: every chunk edge is crossed."""
    monkeypatch.setattr(verify_run, "CHUNK_ROWS", 300)
    monkeypatch.setattr(verify_run, "LEAF_ROWS", 8)
    world.target_sql(
        "UPDATE item_copy SET flag = NOT flag WHERE id IN (300, 301, 600, 1000)",
        "DELETE FROM item_copy WHERE id IN (1, 299)",
    )
    config = load_config(world.config)
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    chosen = verify_run.choose_mappings(config, mappings, ["items"])
    try:
        (verdict,) = verify_run.verify(config, chosen, repair=False)
        assert verdict.remaining.compared == ROWS
        assert verdict.remaining.counts() == {"missing": 2, "extra": 0, "different": 4}
    finally:
        assert world.verify("--mapping", "items", "--repair")[0] == 0


@LOGICAL_ONLY
def test_bad_mapping_choices_exit_2_with_the_reason(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["verify", "-c", str(world.config), "--mapping", "nope"]) == 2
    assert "no mapping named nope" in capsys.readouterr().err
    assert cli.main(["verify", "-c", str(world.config), "--mapping", "published"]) == 2
    error = capsys.readouterr().err
    assert "verify.yaml:" in error and "not a capture source" in error


def _soft_deleted(world: World, key: int) -> bool:
    with world.target.connect() as conn:
        query = "SELECT deleted_at IS NOT NULL FROM item_soft WHERE id = :id"
        return conn.execute(sa.text(query), {"id": key}).scalar() is True
