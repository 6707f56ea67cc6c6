"""The target database's side of the benchmark: tables, progress, correctness and visibility.

Progress is read where syncd commits it, the positions table; correctness is the target's rows
compared with the source history's final state; visibility is PostgreSQL's own commit signal
(NOTIFY is delivered only when the writing transaction commits).
"""

from __future__ import annotations

import select
import threading
import time
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.workload import CUSTOMERS_DDL, Row
from tests.services import PostgresCluster

LATENCY_CHANNEL = "bench_latency"
# written_at: when the row was written (server clock), a cross-check on the NOTIFY time; the
# NOTIFY itself reaches listeners at commit, i.e. when the row becomes visible.
LATENCY_DDL = [
    """CREATE TABLE bench_latency (id BIGINT PRIMARY KEY, sent_at DOUBLE PRECISION,
                                   written_at TIMESTAMPTZ)""",
    f"""CREATE FUNCTION bench_latency_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.written_at := clock_timestamp();
            PERFORM pg_notify('{LATENCY_CHANNEL}', NEW.id::text);
            RETURN NEW;
        END $$""",
    """CREATE TRIGGER bench_latency_stamp BEFORE INSERT OR UPDATE ON bench_latency
       FOR EACH ROW EXECUTE FUNCTION bench_latency_stamp()""",
]


def create_target(cluster: PostgresCluster, name: str, latency_table: bool = False) -> str:
    """A fresh database with the customers target table (and the latency probe's); its URL."""
    url = cluster.create_database(name)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(CUSTOMERS_DDL)
            for statement in LATENCY_DDL if latency_table else []:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    return url


def dsn(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL (for plain psycopg2)."""
    parsed = make_url(url)
    return f"host={parsed.host} port={parsed.port} dbname={parsed.database} user={parsed.username}"


def committed_position(engine: sa.Engine, mapping: str) -> int:
    """The highest position ``mapping`` has committed (0 before the table exists).

    Events travel in ``source.seq`` order to one consumer and batches commit in order, so the
    highest committed position is also how many events have been committed.
    """
    query = sa.text("SELECT coalesce(max(position), 0) FROM syncd_positions WHERE mapping = :m")
    try:
        with engine.connect() as conn:
            return int(conn.execute(query, {"m": mapping}).scalar_one())
    except sa.exc.ProgrammingError:  # the daemon has not created syncd_positions yet
        return 0


@dataclass(frozen=True)
class Mismatch:
    """How the target differs from the expected final state."""

    missing: int
    extra: int
    different: int

    @property
    def wrong_rows(self) -> int:
        return self.missing + self.extra + self.different


def compare_rows(engine: sa.Engine, expected: dict[int, Row]) -> Mismatch:
    query = "SELECT customer_id, full_name, email, score FROM dim_customer"
    with engine.connect() as conn:
        actual: dict[int, Row] = {row[0]: tuple(row) for row in conn.exec_driver_sql(query)}
    return Mismatch(
        missing=len(expected.keys() - actual.keys()),
        extra=len(actual.keys() - expected.keys()),
        different=sum(1 for k, row in expected.items() if k in actual and actual[k] != row),
    )


class CommitListener:
    """LISTENs for the latency probe's NOTIFY and keeps, per id, when it arrived (time.time).

    The clock is the same process's as the publisher's send times, so no two clocks are
    compared; only the wake-up of this thread lies between the commit and the stamp.
    """

    def __init__(self, libpq_dsn: str):
        self._conn = psycopg2.connect(libpq_dsn)
        self._conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with self._conn.cursor() as cursor:
            cursor.execute(f"LISTEN {LATENCY_CHANNEL}")
        self.visible_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="commit-listener", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            if select.select([self._conn], [], [], 0.2)[0]:
                self._conn.poll()
                now = time.time()
                for notify in self._conn.notifies:
                    self.visible_at.setdefault(int(notify.payload), now)
                self._conn.notifies.clear()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.visible_at) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.visible_at) >= count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


def written_at(url: str) -> dict[int, float]:
    """The server's clock_timestamp() when each probe row was written, as epoch seconds."""
    query = "SELECT id, extract(epoch FROM written_at) FROM bench_latency"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {int(row[0]): float(row[1]) for row in conn.exec_driver_sql(query)}
    finally:
        engine.dispose()
