"""``syncd verify`` of an equal table, beside ``COPY … TO STDOUT`` of both tables.

A source and a target database of their own on the bench's PostgreSQL, each with the same
``rows`` rows (integer key, text, numeric(12,2), timestamptz, jsonb, boolean), made by the same
``generate_series`` statement. Then, timed: ``COPY (SELECT …) TO STDOUT`` of the source table and
of the target table, one after the other, read by psycopg2 and thrown away — what shipping both
tables to a client costs, the floor of any comparison that ships rows; and verify of the mapping
between them, in process (``syncd.verify.run.verify``), which digests key-ordered chunks in each
database and ships only their digests. The tables are equal, so verify never waits for a daemon:
no capture or broker is involved.

``python -m bench.verify [--rows N]`` runs it alone (starting its own PostgreSQL); ``make
bench`` runs it as its last phase.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import sqlalchemy as sa

from bench.target import dsn
from syncd.config import load_config
from syncd.mapping import load_mappings
from syncd.verify import run as verify_run
from tests.services import PostgresCluster

TABLE = """
CREATE TABLE {name} (id integer PRIMARY KEY, name text, price numeric(12, 2), at timestamptz,
                     doc jsonb, flag boolean);
INSERT INTO {name}
SELECT i, 'customer ' || i, mod(i, 100000) / 100.0, timestamptz '2026-01-01' + i * interval '1 s',
       jsonb_build_object('n', i, 'tags', jsonb_build_array('a', mod(i, 7))), mod(i, 3) = 0
FROM generate_series(1, {rows}) AS i;
ANALYZE {name};
"""
CONFIG = """\
broker: {{hosts: ["127.0.0.1:1"]}}
databases:
  warehouse: {{url: "{target}"}}
mappings: mappings/
sources:
  bench:
    url: "{source}"
    capture: outbox
    tables: [public.customers]
"""
MAPPING = """\
mappings:
  - name: customers
    source: {system: bench, table: public.customers}
    target: {database: warehouse, table: customer_copy}
    key: [id]
"""


@dataclass(frozen=True)
class VerifyRun:
    rows: int
    copy_s: float  # COPY TO STDOUT of both tables, one after the other
    copy_bytes: int
    verify_s: float
    compared: int
    differences: int

    @property
    def verify_rate(self) -> float:
        return self.rows / self.verify_s

    @property
    def copy_rate(self) -> float:
        return self.rows / self.copy_s  # source rows per second, both tables shipped


def measure(postgres: PostgresCluster, workdir: Path, rows: int) -> VerifyRun:
    source_url = postgres.create_database("bench_verify_source")
    target_url = postgres.create_database("bench_verify_target")
    for url, name in ((source_url, "customers"), (target_url, "customer_copy")):
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(TABLE.format(name=name, rows=rows))
        engine.dispose()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "mappings").mkdir(exist_ok=True)
    (workdir / "mappings" / "bench.yaml").write_text(MAPPING)
    config_path = workdir / "config.yaml"
    config_path.write_text(CONFIG.format(source=source_url, target=target_url))
    started = time.monotonic()
    shipped = _copy(source_url, "customers") + _copy(target_url, "customer_copy")
    copy_s = time.monotonic() - started
    config = load_config(config_path)
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    started = time.monotonic()
    (verdict,) = verify_run.verify(config, mappings, repair=False)
    verify_s = time.monotonic() - started
    remaining = verdict.remaining
    return VerifyRun(rows, copy_s, shipped, verify_s, remaining.compared, len(remaining.keys()))


def _copy(url: str, table: str) -> int:
    """COPY the table, in key order, to this client; the bytes that came."""
    sink = _Counter()
    with psycopg2.connect(dsn(url)) as conn, conn.cursor() as cursor:
        cursor.copy_expert(f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT", sink)
    conn.close()
    return sink.written


class _Counter(io.RawIOBase):
    def __init__(self) -> None:
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        size = len(data)  # type: ignore[arg-type]
        self.written += size
        return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-verify-") as directory:
        workdir = Path(directory)
        workdir.chmod(0o755)
        cluster = PostgresCluster.start(workdir / "postgres")
        try:
            run = measure(cluster, workdir / "verify", args.rows)
        finally:
            cluster.destroy()
    print(
        f"{run.rows:,} equal rows: verify {run.verify_s:.1f} s ({run.verify_rate:,.0f} rows/s, "
        f"{run.differences} differences); COPY TO STDOUT of both tables {run.copy_s:.1f} s "
        f"({run.copy_rate:,.0f} rows/s, {run.copy_bytes / 2**20:,.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
