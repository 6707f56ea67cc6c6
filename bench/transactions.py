"""Whole source transactions, measured: ``python -m bench.transactions`` (not in the suite).

It starts its own ActiveMQ and PostgreSQL (``bench.run.services``) and, with logical capture
from a PostgreSQL source to a PostgreSQL target, through ``syncd run`` as sysadmins run it:

1. **atomic against per-row**: a backlog of transfer transactions (two account updates and a
   transfer row each) written before the daemon starts; the rate is the backlog's events over
   the time from the daemon's start until the target holds the last transfer.
2. **one 100,000-row transaction**: one INSERT of ``--big-rows`` rows; ``syncd run --only
   capture`` publishes it, then ``syncd run --only apply`` applies it; each one's peak RSS
   (VmHWM) is read from /proc before it is stopped.

It reports figures; it never passes or fails on speed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.daemon_phases import peak_rss_mib
from bench.run import services
from tests.harness import Daemon, syncd
from tests.services import Broker, PostgresCluster, wait_until

_runs = itertools.count(1)

SOURCE_SCHEMA = """
CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL, moves integer NOT NULL);
CREATE TABLE transfers (id bigserial PRIMARY KEY, src integer, dst integer, amount bigint,
                        note text);
"""
TARGET_SCHEMA = SOURCE_SCHEMA.replace("bigserial", "bigint")
MAPPINGS = """\
mappings:
  - {{name: accounts, source: {{system: {name}, table: public.accounts}},
     target: {{database: warehouse, table: accounts}}, key: [id]}}
  - {{name: transfers, source: {{system: {name}, table: public.transfers}},
     target: {{database: warehouse, table: transfers}}, key: [id]}}
"""
CONFIG = """\
broker: {{hosts: ["127.0.0.1:{port}"]}}
state_dir: state/
databases:
  warehouse: {{url: "{target}"}}
mappings: mappings/
sources:
  {name}:
    url: "{source}"
    capture: logical
    tables: [public.accounts, public.transfers]
    transactions: {mode}
"""


class Setup:
    def __init__(self, workdir: Path, broker: Broker, postgres: PostgresCluster, mode: str):
        self.name = f"tx_{mode.replace('-', '_')}_{next(_runs)}"
        self.directory = workdir / self.name
        (self.directory / "mappings").mkdir(parents=True)
        source_url = postgres.create_database(f"{self.name}_source")
        target_url = postgres.create_database(f"{self.name}_target")
        self.source, self.target = sa.create_engine(source_url), sa.create_engine(target_url)
        with self.source.begin() as conn:
            conn.exec_driver_sql(SOURCE_SCHEMA)
        with self.target.begin() as conn:
            conn.exec_driver_sql(TARGET_SCHEMA)
        (self.directory / "mappings" / "bank.yaml").write_text(MAPPINGS.format(name=self.name))
        self.config = self.directory / "config.yaml"
        self.config.write_text(
            CONFIG.format(
                port=broker.port, target=target_url, source=source_url, name=self.name, mode=mode
            )
        )
        result = syncd("capture", "install", "-c", str(self.config))
        assert result.returncode == 0, result.stderr

    def count(self, table: str) -> int:
        with self.target.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() or 0)

    def close(self) -> None:
        result = syncd("capture", "uninstall", "-c", str(self.config), "--force")
        assert result.returncode == 0, result.stderr
        self.source.dispose()
        self.target.dispose()


def transfers_backlog(setup: Setup, transactions: int) -> int:
    """``transactions`` transfers, written before any daemon runs; returns their events."""
    with setup.source.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO accounts SELECT g, 1000, 0 FROM generate_series(1, 100) g"
        )
    with setup.source.connect() as conn:
        for n in range(transactions):
            src, dst = n % 100 + 1, (n * 7 + 3) % 100 + 1
            if src == dst:
                dst = dst % 100 + 1
            with conn.begin():
                for account, delta in sorted(((src, -1), (dst, 1))):
                    conn.execute(
                        sa.text(
                            "UPDATE accounts SET balance = balance + :d, moves = moves + 1"
                            " WHERE id = :id"
                        ),
                        {"d": delta, "id": account},
                    )
                conn.execute(
                    sa.text("INSERT INTO transfers (src, dst, amount) VALUES (:s, :d, 1)"),
                    {"s": src, "d": dst},
                )
    return 100 + 3 * transactions


def throughput(workdir: Path, broker: Broker, postgres: PostgresCluster, mode: str, n: int) -> str:
    setup = Setup(workdir, broker, postgres, mode)
    try:
        events = transfers_backlog(setup, n)
        daemon = Daemon(setup.config).start()
        started = time.monotonic()
        try:
            wait_until(lambda: setup.count("transfers") == n, 600, f"{mode}: the backlog", 0.05)
            seconds = time.monotonic() - started
        finally:
            daemon.stop()
    finally:
        setup.close()
    return (
        f"{mode:8} {n} transfer transactions ({events} events): {seconds:.1f} s, "
        f"{events / seconds:.0f} events/s (daemon start included)"
    )


def big_transaction(workdir: Path, broker: Broker, postgres: PostgresCluster, rows: int) -> str:
    setup = Setup(workdir, broker, postgres, "atomic")
    try:
        with setup.source.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO transfers (src, dst, amount, note) SELECT mod(g, 100), mod(g, 97), g,"
                f" repeat('x', 100) FROM generate_series(1, {rows}) g"
            )
        capture = Daemon(setup.config, "--only", "capture").start()
        started = time.monotonic()
        try:
            queue = f"syncd.{setup.name}"
            wait_until(
                lambda: enqueued(broker, queue) >= (rows + 1999) // 2000,
                600,
                "the capture to publish",
                0.2,
            )
            capture_s = time.monotonic() - started
            assert capture.process is not None
            capture_rss = peak_rss_mib(capture.process.pid)["VmHWM"]
        finally:
            capture.stop()
        parts = broker.queue_stats(f"syncd.{setup.name}").get("enqueueCount", 0)
        apply = Daemon(setup.config, "--only", "apply").start()
        started = time.monotonic()
        try:
            wait_until(lambda: setup.count("transfers") == rows, 600, "the apply", 0.2)
            apply_s = time.monotonic() - started
            assert apply.process is not None
            apply_rss = peak_rss_mib(apply.process.pid)["VmHWM"]
        finally:
            apply.stop()
    finally:
        setup.close()
    return (
        f"one transaction of {rows} rows, {parts} parts: capture {capture_s:.1f} s, peak RSS "
        f"{capture_rss:.0f} MiB; apply {apply_s:.1f} s (start included), "
        f"peak RSS {apply_rss:.0f} MiB"
    )


def enqueued(broker: Broker, queue: str) -> int:
    """Messages sent to ``queue`` so far (0 while the broker does not know it yet)."""
    try:
        return int(broker.queue_stats(queue).get("enqueueCount", 0))
    except AssertionError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transactions")
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--big-rows", type=int, default=100_000)
    parser.add_argument("--transfers-only", action="store_true")
    parser.add_argument("--big-only", action="store_true")
    args = parser.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-tx-") as directory:
        workdir = Path(directory)
        workdir.chmod(0o755)
        with services(workdir) as (broker, postgres):
            for mode in ("per-row", "atomic") if not args.big_only else ():
                lines.append(throughput(workdir, broker, postgres, mode, args.transfers))
                print(lines[-1], flush=True)
            if not args.transfers_only:
                lines.append(big_transaction(workdir, broker, postgres, args.big_rows))
                print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
