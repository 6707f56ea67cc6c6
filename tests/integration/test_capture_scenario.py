"""The acceptance scenario of capture, in both modes: a PostgreSQL source under a concurrent
workload is copied to a PostgreSQL target, through a snapshot and a SIGKILL, exactly.

Only what users touch: config.yaml and mapping YAML written here, `syncd capture install`,
`syncd snapshot` and `syncd run` (capture and apply in one daemon) as processes, a real
ActiveMQ and a real PostgreSQL cluster holding both the source and the target database.

The source's ``documents`` table has a 100 kB ``body`` of random text stored EXTERNAL (out
of line, uncompressed: really TOASTed). Rows that existed before capture was installed and
whose body is never rewritten are the hard case of logical decoding: an update that leaves
the body alone does not carry it (pgoutput sends it as "unchanged TOAST"), so the target can
only get it from the snapshot or from the row it already holds.

The workload: threads, each owning its own keys (no lock waits between them), run
multi-statement transactions in a fixed cycle of kinds — inserts, small-column updates of
rows with big bodies, updates of the big column, deletes, primary-key changes, and
transactions rolled back on purpose — while the snapshot runs, while the daemon is dead and
after it is back. Logical mode also truncates the second table midway (it carries the
TRUNCATE as an ``op: t`` event). Outbox mode has no TRUNCATE trigger and the README says
nothing of what a TRUNCATE does there, so outbox mode leaves it out.
"""

from __future__ import annotations

import itertools
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.harness import REPO, Daemon, StompClient, syncd
from tests.services import Broker, PostgresCluster, wait_until

pytestmark = pytest.mark.integration

_runs = itertools.count(1)

THREADS = 4
PRE_EXISTING_DOCUMENTS = 320
PRE_EXISTING_BIG = 40  # of them, with a 100 kB body
PRE_EXISTING_NOTES = 120
BIG_CHARS = 100_000
CONVERGE_TIMEOUT_S = 60

SOURCE_SCHEMA = """
CREATE TABLE documents (
    id integer PRIMARY KEY, title text NOT NULL, version integer NOT NULL, body text);
-- EXTERNAL: out of line and uncompressed, so a 100 kB body really is TOASTed.
ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE notes (id integer PRIMARY KEY, doc_id integer, note text);
"""
TARGET_SCHEMA = """
CREATE TABLE doc_copy (
    id integer PRIMARY KEY, title text NOT NULL, version integer NOT NULL, body text);
CREATE TABLE note_copy (id integer PRIMARY KEY, doc_id integer, note text);
"""
# (source table, target table): the mappings below copy every column under its own name.
TABLES = (("documents", "doc_copy"), ("notes", "note_copy"))
MAPPINGS = """\
mappings:
  - name: documents
    source: {{system: {name}, table: public.documents}}
    target: {{database: warehouse, table: doc_copy}}
    key: [id]
  - name: notes
    source: {{system: {name}, table: public.notes}}
    target: {{database: warehouse, table: note_copy}}
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
  warehouse: {{url: "{target}"}}
mappings: mappings/
sources:
  {name}:
    url: "{source}"
    capture: {mode}
    tables: [public.documents, public.notes]
"""


def big_text() -> str:
    """100 kB of random URL-safe letters: nothing for a compressor to find."""
    return secrets.token_urlsafe(BIG_CHARS * 3 // 4)[:BIG_CHARS]


def small_text(rng: random.Random) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=rng.randint(5, 60)))


# ------------------------------------------------------------------------------ the workload


@dataclass
class Keys:
    """What one worker knows of the rows it owns (only it changes them)."""

    documents: set[int] = field(default_factory=set)
    big: set[int] = field(default_factory=set)  # documents with a 100 kB body
    # Big bodies written before capture began and never rewritten since (the key may have
    # moved): an update that leaves such a body alone is one the stream cannot carry whole.
    untouched_big: set[int] = field(default_factory=set)
    notes: set[int] = field(default_factory=set)


Statements = list[tuple[str, dict[str, Any]]]
KINDS = ("insert", "update_small", "update_big", "delete", "move_key", "rolled_back")


class Workload:
    """Threads running multi-statement transactions on the source until stopped.

    Worker ``i`` owns the keys ``k`` with ``k % THREADS == i``, so workers never wait on
    each other's row locks; each runs the ``KINDS`` in a fixed cycle, so every kind happens
    in every phase that lasts a cycle or more.
    """

    def __init__(self, engine: sa.Engine, keys: list[Keys], seed: int) -> None:
        self.engine = engine
        self.keys = keys
        self.seed = seed
        self.stopping = threading.Event()
        self.committed: Counter[str] = Counter()
        self.rolled_back = 0
        self.iterations = [0] * len(keys)
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"workload-{i}", daemon=True)
            for i in range(len(keys))
        ]

    def start(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(30)
        assert not self.errors, f"the workload failed: {self.errors[0]!r}"

    def cycles_done(self) -> int:
        """Full cycles of KINDS that every worker has finished."""
        with self._lock:
            return min(self.iterations) // len(KINDS)

    def go_on(self, seconds: float, cycles: int = 1) -> None:
        """Let the workload run ``seconds``, and at least ``cycles`` full cycles, from now."""
        until = time.monotonic() + seconds
        goal = self.cycles_done() + cycles
        wait_until(
            lambda: (self.cycles_done() >= goal and time.monotonic() >= until) or bool(self.errors),
            seconds + 60,
            f"{cycles} workload cycles",
            0.05,
        )
        assert not self.errors, f"the workload failed: {self.errors[0]!r}"

    def _work(self, worker: int) -> None:
        rng = random.Random(self.seed * 100 + worker)
        fresh = (100_000 + worker + THREADS * n for n in itertools.count())
        keys = self.keys[worker]
        try:
            for iteration in itertools.count():
                if self.stopping.is_set():
                    return
                kind = KINDS[iteration % len(KINDS)]
                self._transaction(kind, keys, rng, fresh)
                with self._lock:
                    self.iterations[worker] += 1
                time.sleep(rng.uniform(0.005, 0.03))
        except BaseException as error:  # reported by stop() and go_on()
            self.errors.append(error)

    def _transaction(self, kind: str, keys: Keys, rng: random.Random, fresh: Iterator[int]) -> None:
        statements, after_commit = PLANS[kind](keys, rng, fresh)
        if kind == "rolled_back":
            with self.engine.connect() as conn:
                transaction = conn.begin()
                try:
                    for sql, params in statements:
                        conn.execute(sa.text(sql), params)
                finally:
                    transaction.rollback()  # on purpose: none of it may reach the target
            with self._lock:
                self.rolled_back += 1
            return
        with self.engine.begin() as conn:
            for sql, params in statements:
                conn.execute(sa.text(sql), params)
        after_commit()
        with self._lock:
            self.committed[kind] += 1


Plan = tuple[Statements, Callable[[], None]]


def _pick(rng: random.Random, *pools: set[int]) -> int | None:
    """A key from the first non-empty pool."""
    for pool in pools:
        if pool:
            return rng.choice(sorted(pool))
    return None


def plan_insert(keys: Keys, rng: random.Random, fresh: Iterator[int]) -> Plan:
    small_id, big_id, note_id = next(fresh), next(fresh), next(fresh)
    body = big_text()
    statements: Statements = [
        (
            "INSERT INTO documents VALUES (:id, :title, 1, :body)",
            {"id": small_id, "title": small_text(rng), "body": small_text(rng)},
        ),
        (
            "INSERT INTO documents VALUES (:id, :title, 1, :body)",
            {"id": big_id, "title": small_text(rng), "body": body},
        ),
        # The same row twice in one transaction: the insert, then a small update of it.
        (
            "UPDATE documents SET title = :title, version = version + 1 WHERE id = :id",
            {"id": big_id, "title": small_text(rng)},
        ),
        (
            "INSERT INTO notes VALUES (:id, :doc, :note)",
            {"id": note_id, "doc": big_id, "note": small_text(rng)},
        ),
    ]

    def committed() -> None:
        keys.documents.update((small_id, big_id))
        keys.big.add(big_id)
        keys.notes.add(note_id)

    return statements, committed


def plan_update_small(keys: Keys, rng: random.Random, fresh: Iterator[int]) -> Plan:
    # Small columns only, of rows with a big body: pre-existing untouched ones first.
    chosen = {_pick(rng, keys.untouched_big, keys.big), _pick(rng, keys.big, keys.documents)}
    statements: Statements = [
        (
            "UPDATE documents SET title = :title, version = version + 1 WHERE id = :id",
            {"id": key, "title": small_text(rng)},
        )
        for key in chosen
        if key is not None
    ]
    note = _pick(rng, keys.notes)
    statements.append(
        (
            "UPDATE notes SET note = :note WHERE id = :id",
            {"id": note or -1, "note": small_text(rng)},
        )
    )
    return statements, lambda: None


def plan_update_big(keys: Keys, rng: random.Random, fresh: Iterator[int]) -> Plan:
    rewritten = _pick(rng, keys.big, keys.documents)
    other = _pick(rng, keys.untouched_big, keys.documents)
    statements: Statements = [
        (
            "UPDATE documents SET body = :body, version = version + 1 WHERE id = :id",
            {"id": rewritten if rewritten is not None else -1, "body": big_text()},
        ),
        (
            "UPDATE documents SET title = :title WHERE id = :id",
            {"id": other if other is not None else -1, "title": small_text(rng)},
        ),
    ]

    def committed() -> None:
        if rewritten is not None:
            keys.big.add(rewritten)
            keys.untouched_big.discard(rewritten)

    return statements, committed


def plan_delete(keys: Keys, rng: random.Random, fresh: Iterator[int]) -> Plan:
    # Mostly small rows, so that big pre-existing rows stay around for the other kinds.
    small = keys.documents - keys.big
    doc = _pick(rng, small, keys.documents) if rng.random() < 0.8 else _pick(rng, keys.documents)
    note = _pick(rng, keys.notes)
    statements: Statements = [
        ("DELETE FROM documents WHERE id = :id", {"id": doc if doc is not None else -1}),
        ("DELETE FROM notes WHERE id = :id", {"id": note if note is not None else -1}),
    ]

    def committed() -> None:
        for pool in (keys.documents, keys.big, keys.untouched_big):
            pool.discard(doc if doc is not None else -1)
        keys.notes.discard(note if note is not None else -1)

    return statements, committed


def plan_move_key(keys: Keys, rng: random.Random, fresh: Iterator[int]) -> Plan:
    """A primary-key change of a row with a big body, then a small update of it.

    Of a row whose body the stream has carried (inserted or rewritten since install): a row
    that predates the stream, moved to a new key before its snapshot event is applied, with
    its TOASTed body untouched, cannot be completed (README, "TOASTed columns").
    """
    old = _pick(rng, keys.big - keys.untouched_big, keys.documents - keys.untouched_big)
    new = next(fresh)
    statements: Statements = [
        ("UPDATE documents SET id = :new WHERE id = :old", {"old": old or -1, "new": new}),
        ("UPDATE documents SET version = version + 1 WHERE id = :id", {"id": new}),
    ]

    def committed() -> None:
        if old is None:
            return
        for pool in (keys.documents, keys.big, keys.untouched_big):
            if old in pool:
                pool.discard(old)
                pool.add(new)

    return statements, committed


def plan_rolled_back(keys: Keys, rng: random.Random, fresh: Iterator[int]) -> Plan:
    doc = _pick(rng, keys.untouched_big, keys.documents)
    gone = _pick(rng, keys.documents)
    statements: Statements = [
        (
            "INSERT INTO documents VALUES (:id, 'never', 1, :body)",
            {"id": next(fresh), "body": big_text()},
        ),
        (
            "UPDATE documents SET body = :body, title = 'never' WHERE id = :id",
            {"id": doc if doc is not None else -1, "body": big_text()},
        ),
        ("DELETE FROM documents WHERE id = :id", {"id": gone if gone is not None else -1}),
        ("INSERT INTO notes VALUES (:id, 0, 'never')", {"id": next(fresh)}),
    ]
    return statements, lambda: None


PLANS: dict[str, Callable[[Keys, random.Random, Iterator[int]], Plan]] = {
    "insert": plan_insert,
    "update_small": plan_update_small,
    "update_big": plan_update_big,
    "delete": plan_delete,
    "move_key": plan_move_key,
    "rolled_back": plan_rolled_back,
}


# ------------------------------------------------------------------------------- the setup


@dataclass
class Scenario:
    name: str
    mode: str
    config: Path
    source: sa.Engine
    target: sa.Engine
    dlq: str
    client: StompClient

    def run(self, *statements: str) -> None:
        with self.source.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def slot_active(self) -> bool:
        query = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'syncd_{self.name}'"
        with self.source.connect() as conn:
            return bool(conn.exec_driver_sql(query + " AND active").scalar())

    def installed(self) -> bool:
        if self.mode == "logical":
            query = (
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'syncd_{self.name}'"
            )
        else:
            query = "SELECT count(*) FROM pg_tables WHERE tablename = 'syncd_outbox'"
        with self.source.connect() as conn:
            return bool(conn.exec_driver_sql(query).scalar())


def seed(engine: sa.Engine) -> list[Keys]:
    """The rows that exist before capture is installed; each worker's share of them."""
    rng = random.Random(1)
    keys = [Keys() for _ in range(THREADS)]
    big = set(rng.sample(range(1, PRE_EXISTING_DOCUMENTS + 1), PRE_EXISTING_BIG))
    documents = [
        {"id": k, "title": small_text(rng), "body": big_text() if k in big else small_text(rng)}
        for k in range(1, PRE_EXISTING_DOCUMENTS + 1)
    ]
    notes = [
        {"id": k, "doc": rng.randint(1, PRE_EXISTING_DOCUMENTS), "note": small_text(rng)}
        for k in range(1, PRE_EXISTING_NOTES + 1)
    ]
    with engine.begin() as conn:
        conn.exec_driver_sql(SOURCE_SCHEMA)
        conn.execute(sa.text("INSERT INTO documents VALUES (:id, :title, 1, :body)"), documents)
        conn.execute(sa.text("INSERT INTO notes VALUES (:id, :doc, :note)"), notes)
        external = conn.exec_driver_sql(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'documents'"
        ).scalar()
    assert external and external > PRE_EXISTING_BIG * BIG_CHARS, "the big bodies are TOASTed"
    for k in range(1, PRE_EXISTING_DOCUMENTS + 1):
        owner = keys[k % THREADS]
        owner.documents.add(k)
        if k in big:
            owner.big.add(k)
            owner.untouched_big.add(k)
    for k in range(1, PRE_EXISTING_NOTES + 1):
        keys[k % THREADS].notes.add(k)
    return keys


@pytest.fixture(params=["logical", "outbox"])
def scenario(
    request: pytest.FixtureRequest, broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> Iterator[Scenario]:
    mode = request.param
    run = next(_runs)
    name = f"scenario_{mode}_{run}"
    source_url = postgres.create_database(f"{name}_source")
    target_url = postgres.create_database(f"{name}_target")
    source, target = sa.create_engine(source_url), sa.create_engine(target_url)
    with target.begin() as conn:
        conn.exec_driver_sql(TARGET_SCHEMA)
    dlq = f"/queue/syncd.DLQ.{name}"
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "scenario.yaml").write_text(MAPPINGS.format(name=name))
    config = tmp_path / "config.yaml"
    config.write_text(
        CONFIG.format(
            port=broker.port, dlq=dlq, target=target_url, name=name, source=source_url, mode=mode
        )
    )
    client = StompClient(broker.port)
    made = Scenario(name, mode, config, source, target, dlq, client)
    yield made
    client.close()
    if made.installed():  # a slot left behind would keep WAL for ever
        if mode == "logical":
            wait_until(lambda: not made.slot_active(), 15, "the slot to be released")
        result = syncd("capture", "uninstall", "-c", str(config), "--source", name, "--force")
        assert result.returncode == 0, result.stderr
    source.dispose()
    target.dispose()


# --------------------------------------------------------------------------- the comparison


def table_rows(engine: sa.Engine, table: str) -> dict[int, tuple[Any, ...]]:
    with engine.connect() as conn:
        return {row[0]: tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table}")}


def differences(scenario: Scenario) -> dict[str, str]:
    """Per source table that the target does not equal: a summary of how it differs."""
    found = {}
    for source_table, target_table in TABLES:
        want = table_rows(scenario.source, source_table)
        got = table_rows(scenario.target, target_table)
        if want != got:
            found[source_table] = describe_difference(want, got)
    return found


def describe_difference(want: dict[int, tuple[Any, ...]], got: dict[int, tuple[Any, ...]]) -> str:
    missing = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    different = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])

    def shown(row: tuple[Any, ...]) -> tuple[Any, ...]:  # a 100 kB body as its length
        return tuple(f"<{len(v)} chars>" if isinstance(v, str) and len(v) > 80 else v for v in row)

    lines = [
        f"{len(want)} source rows, {len(got)} target rows; missing {len(missing)}: "
        f"{missing[:15]}, extra {len(extra)}: {extra[:15]}, different {len(different)}:"
    ]
    lines += [f"  {k}: source {shown(want[k])} target {shown(got[k])}" for k in different[:10]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the test


def test_concurrent_workload_through_snapshot_and_sigkill_converges_exactly(
    scenario: Scenario,
) -> None:
    started = time.monotonic()
    keys = seed(scenario.source)
    result = syncd("capture", "install", "-c", str(scenario.config), "--source", scenario.name)
    assert result.returncode == 0, result.stderr
    daemon = Daemon(scenario.config).start()
    snapshot: subprocess.Popen[str] | None = None
    try:
        wait_until(
            lambda: "syncd applying" in daemon.log() and "capturing to" in daemon.log(),
            30,
            "the daemon to capture and apply",
        )
        workload_seed = random.randrange(1_000_000)
        workload = Workload(scenario.source, keys, workload_seed).start()
        timings: dict[str, float] = {}
        try:
            workload.go_on(1.5)  # the stream alone, before the snapshot
            command = ["snapshot", "-c", str(scenario.config), "--source", scenario.name]
            snapshot = subprocess.Popen(
                [sys.executable, "-m", "syncd", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            workload.go_on(1.5)
            if scenario.mode == "logical":
                scenario.run("TRUNCATE notes")  # while the workload and the snapshot write notes
                workload.go_on(1.5)
            daemon.kill()  # SIGKILL: batches in hand neither confirmed nor acknowledged
            timings["killed"] = time.monotonic() - started
            workload.go_on(2.0, 2)  # the source changes on while nothing captures
            daemon.start()
            out, err = snapshot.communicate(timeout=120)
            assert snapshot.returncode == 0, f"snapshot exit {snapshot.returncode}: {out}{err}"
            assert f"snapshot of source {scenario.name} is complete" in out
            timings["snapshot done by"] = time.monotonic() - started
            workload.go_on(4.0, 2)  # after the snapshot: the stream alone must carry changes
        finally:
            workload.stop()
        timings["workload stopped"] = time.monotonic() - started
        converged = wait_for_convergence(scenario, CONVERGE_TIMEOUT_S)
        timings["converged" if converged is None else "gave up"] = time.monotonic() - started
        run = (
            f"{scenario.mode} (seed {workload_seed}): "
            f"{sum(workload.committed.values())} transactions committed "
            f"{dict(workload.committed)}, {workload.rolled_back} rolled back; "
            + ", ".join(f"{what} at {at:.1f} s" for what, at in timings.items())
        )
        print("\n" + run)
        dead = scenario.client.drain(scenario.dlq, 1.0)
        assert not dead, "dead letters: " + "; ".join(
            m.headers.get("syncd-error", "?") for m in dead[:5]
        )
        assert converged is None, (
            f"the target did not converge in {CONVERGE_TIMEOUT_S} s; {run}\n"
            + "\n".join(f"{table}: {summary}" for table, summary in converged.items())
        )
        assert min(workload.committed[k] for k in KINDS if k != "rolled_back") >= 6
        assert daemon.running, daemon.log()[-5000:]
        assert daemon.stop() == 0, daemon.log()[-5000:]
    finally:
        if snapshot is not None and snapshot.poll() is None:
            snapshot.kill()
            snapshot.wait(10)
        if daemon.running:  # a failure above: the fixture's uninstall needs the slot free
            daemon.kill()


def wait_for_convergence(scenario: Scenario, timeout_s: float) -> dict[str, str] | None:
    """None once the target equals the source; else, at the timeout, how they differ."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = differences(scenario)
        if not found or time.monotonic() > deadline:
            return found or None
        time.sleep(0.5)
