"""``python -m bench.run [--events N] [--json PATH]``: measure syncd against one real broker.

Starts its own ActiveMQ and PostgreSQL (``tests/services.py``, as the tests do; the
``SYNCD_TEST_BROKER`` / ``SYNCD_TEST_POSTGRES_URL`` variables work here too), runs every
phase on that one broker, prints a table, writes the figures as JSON, and stops what it
started. Not a test: nothing passes or fails on speed. Phases, in order:

1. a bare stomp.py consumer drains a pre-loaded queue (ACK every 100; ACK each): the ceiling;
2. ``syncd run`` drains pre-loaded single-event messages; the target is checked row by row;
3. latency: probes at a fixed moderate rate to the same, now idle, daemon;
4. ``syncd run`` drains messages that carry arrays of events; checked row by row;
5. a naive consumer: one PostgreSQL transaction and one ACK per message;
6. capture, per mode (``logical``, ``outbox``): ``syncd run --only capture`` drains a backlog
   of changes written to a source database before it started (``bench/capture.py``);
7. ``syncd verify`` of an equal table, beside ``COPY … TO STDOUT`` of both tables
   (``bench/verify.py``).

Publishing rates (the ``Publisher`` library and ``syncd publish``) are taken while the queues
of phases 1 and 2 are filled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import capture, consumers, daemon_phases, sending, target, workload
from bench import verify as verify_phase
from bench.report import Metric, machine_facts, render_table, write_json
from tests.harness import Daemon, write_config
from tests.services import Broker, PostgresCluster

REPO = Path(__file__).resolve().parent.parent
DRAIN_TIMEOUT_S = 900
WARMUP_MESSAGES = 5_000
# Table order; each phase names its section (with its sizes) as it starts.
SECTIONS = ["ceiling", "single", "latency", "arrays", "naive", "publish", "capture", "verify"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--events",
        type=int,
        default=50_000,
        metavar="N",
        help="messages for the ceilings and the single-event phase; the array phase sends "
        "2×N events (default 50000)",
    )
    parser.add_argument("--array-size", type=int, default=50, help="events per array message")
    parser.add_argument(
        "--naive-events", type=int, default=5_000, metavar="N", help="for the naive consumer"
    )
    parser.add_argument(
        "--capture-events",
        type=int,
        default=20_000,
        metavar="N",
        help="row changes each capture mode drains: N/2 inserts, then N/2 updates, in "
        f"transactions of {capture.CHANGES_PER_TX} (default 20000)",
    )
    parser.add_argument(
        "--verify-rows",
        type=int,
        default=1_000_000,
        metavar="N",
        help="rows of the equal table verify compares (default 1000000)",
    )
    parser.add_argument("--latency-rate", type=float, default=500, metavar="EV_PER_S")
    parser.add_argument("--latency-seconds", type=float, default=10, metavar="S")
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "var" / "bench.json",
        metavar="PATH",
        help="where to write the figures (default var/bench.json)",
    )
    return parser


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


class Bench:
    """The phases, sharing one broker and one PostgreSQL server; collects ``metrics``."""

    def __init__(
        self, args: argparse.Namespace, workdir: Path, broker: Broker, postgres: PostgresCluster
    ):
        self.args = args
        self.workdir = workdir
        self.broker = broker
        self.postgres = postgres
        self.metrics: list[Metric] = []
        self.titles: dict[str, str] = {}
        self.notes: dict[str, Any] = {}

    def title(self, section: str, text: str) -> None:
        self.titles[section] = text

    def add(
        self, key: str, label: str, value: float | str | None, unit: str, note: str = ""
    ) -> None:
        section = key.split("_", 1)[0]
        heading = self.titles.get(section, section)
        self.metrics.append(Metric(key, heading, label, value, unit, note))

    def table_sections(self) -> list[str]:
        return [self.titles.get(section, section) for section in SECTIONS]

    def run_all(self) -> None:
        n = self.args.events
        self.warm_up()
        self.bare_ceilings(workload.customer_history("bench_bare", n, seed=1))
        self.syncd_single(workload.customer_history("bench_single", n, seed=2))
        self.syncd_arrays(workload.customer_history("bench_arrays", 2 * n, seed=3))
        self.naive(workload.customer_history("bench_naive", self.args.naive_events, seed=4))
        self.capture_backlogs(self.args.capture_events)
        self.verify_equal(self.args.verify_rows)

    def warm_up(self) -> None:
        """Let the broker's JIT and KahaDB settle, so that the first ceiling is not a cold one."""
        say(f"warming the broker up with {WARMUP_MESSAGES:,} messages")
        history = workload.customer_history("bench_warmup", WARMUP_MESSAGES, seed=0)
        destination = "/queue/bench.warmup"
        sending.preload(self.broker.port, destination, sending.single_event_items(history.events))
        consumers.consume_bare(self.broker.port, destination, WARMUP_MESSAGES, ack_every=100)

    def config(self, name: str, url: str, mappings: str) -> Path:
        """A config.yaml (as the tests write it) and mapping file in a directory of its own."""
        directory = self.workdir / name
        directory.mkdir()
        dlq = f"/queue/bench.{name}.DLQ"
        return write_config(directory, self.broker.port, url, mappings, dead_letter_queue=dlq)

    # -- 1. the ceiling, and publishing with the library ------------------------------------

    def bare_ceilings(self, history: workload.History) -> None:
        n = len(history.events)
        self.title("ceiling", f"ceiling: bare stomp.py consumer, {n:,} single-event messages")
        self.title("publish", f"publish: {n:,} events, each its own message")
        url = target.create_target(self.postgres, "bench_bare")  # only for the config's sake
        config = self.config("bare", url, workload.mappings_yaml(history.system))
        say(f"publishing {n:,} events with syncd.publisher.Publisher")
        seconds = sending.publish_with_library(config, history.events)
        self.add(
            "publish_library_rate",
            "Publisher.publish(), 500 per transaction",
            n / seconds,
            "events/s",
        )
        say(f"bare stomp.py consumer, cumulative ACK every 100, {n:,} messages")
        cumulative = consumers.consume_bare(self.broker.port, "/queue/syncd.bench_bare", n, 100)
        self.notes["ceiling_rate"] = cumulative.rate
        self.add("ceiling_cumulative_rate", "ACK every 100 (client)", cumulative.rate, "msg/s")
        destination = "/queue/bench.bare_individual"
        sending.preload(self.broker.port, destination, sending.single_event_items(history.events))
        say(f"bare stomp.py consumer, ACK each (client-individual), {n:,} messages")
        individual = consumers.consume_bare(self.broker.port, destination, n, ack_every=1)
        self.add(
            "ceiling_individual_rate", "ACK each (client-individual)", individual.rate, "msg/s"
        )

    # -- 2. + 3. syncd on single-event messages, then latency on the idle daemon ----------

    def syncd_single(self, history: workload.History) -> None:
        n = len(history.events)
        self.title("single", f"syncd run: {n:,} single-event messages, {len(history.rows):,} keys")
        url = target.create_target(self.postgres, "bench_single", latency_table=True)
        config = self.config("single", url, workload.mappings_yaml(history.system, True))
        jsonl = config.parent / "events.jsonl"
        jsonl.write_text("".join(json.dumps(e) + "\n" for e in history.events))
        say(f"publishing {n:,} events with `syncd publish`")
        seconds = sending.publish_with_cli(config, jsonl, n)
        self.add(
            "publish_cli_rate",
            "`syncd publish FILE` (wall time, start-up included)",
            n / seconds,
            "events/s",
        )
        with self.daemon("single", config, url) as (daemon, engine):
            say(f"syncd run: draining {n:,} single-event messages")
            drained = daemon_phases.drain(
                daemon, engine, "customers", n, DRAIN_TIMEOUT_S, self.service_pids()
            )
            self.report_drain("single", drained, engine, history)
            self.latency(config, url, history.system)
            self.report_memory("single", "peak RSS (VmHWM), latency phase included", daemon)

    def latency(self, config: Path, url: str, system: str) -> None:
        rate, seconds = self.args.latency_rate, self.args.latency_seconds
        self.title("latency", f"latency: {rate:g} events/s for {seconds:g} s to the idle daemon")
        say(f"latency: {rate:g} events/s for {seconds:g} s, then Publisher.publish() one by one")
        result = daemon_phases.measure_latency(self.broker.port, config, url, system, rate, seconds)
        p = daemon_phases.percentile
        label = "SEND → row committed"
        self.add("latency_p50_ms", f"{label}, p50", p(result.visible_ms, 50), "ms")
        self.add("latency_p99_ms", f"{label}, p99", p(result.visible_ms, 99), "ms")
        self.add("latency_max_ms", f"{label}, max", max(result.visible_ms), "ms")
        self.add("latency_achieved_rate", "sending rate achieved", result.achieved_rate, "events/s")
        label = "Publisher.publish() of 1 event"
        self.add(
            "latency_publish_one_confirm_p50_ms",
            f"{label}: call returns, p50",
            p(result.library_confirm_ms, 50),
            "ms",
        )
        self.add(
            "latency_publish_one_visible_p50_ms",
            f"{label}: call → row committed, p50",
            p(result.library_visible_ms, 50),
            "ms",
        )
        self.notes["latency_commit_gap_p50_ms"] = p(result.commit_gap_ms, 50)
        self.notes["latency_commit_gap_p99_ms"] = p(result.commit_gap_ms, 99)

    # -- 4. syncd on array messages ---------------------------------------------------------

    def syncd_arrays(self, history: workload.History) -> None:
        n, size = len(history.events), self.args.array_size
        url = target.create_target(self.postgres, "bench_arrays")
        config = self.config("arrays", url, workload.mappings_yaml(history.system))
        arrays = workload.in_arrays(history.events, size)
        destination = f"/queue/syncd.{history.system}"
        messages = sending.preload(self.broker.port, destination, sending.array_items(arrays))
        self.title(
            "arrays",
            f"syncd run: {n:,} events in {messages:,} arrays of {size}, {len(history.rows):,} keys",
        )
        with self.daemon("arrays", config, url) as (daemon, engine):
            say(f"syncd run: draining {n:,} events in {messages:,} arrays of {size}")
            drained = daemon_phases.drain(
                daemon, engine, "customers", n, DRAIN_TIMEOUT_S, self.service_pids()
            )
            self.report_drain("arrays", drained, engine, history)
            self.report_memory("arrays", "peak RSS (VmHWM)", daemon)

    # -- 5. the naive consumer ----------------------------------------------------------------

    def naive(self, history: workload.History) -> None:
        n = len(history.events)
        self.title("naive", f"naive consumer: 1 transaction + 1 ACK per message, {n:,} messages")
        url = target.create_target(self.postgres, "bench_naive")
        destination = "/queue/bench.naive"
        sending.preload(self.broker.port, destination, sending.single_event_items(history.events))
        say(f"naive consumer: one transaction + one ACK per message, {n:,} messages")
        result = consumers.consume_naive(self.broker.port, destination, n, target.dsn(url))
        self.add("naive_rate", "rate", result.rate, "msg/s")
        engine = sa.create_engine(url)
        try:
            mismatch = target.compare_rows(engine, history.expected())
        finally:
            engine.dispose()
        self.add("naive_wrong_rows", "wrong rows", mismatch.wrong_rows, "rows")

    # -- 6. capture ----------------------------------------------------------------------------

    def capture_backlogs(self, changes: int) -> None:
        self.title(
            "capture",
            f"capture: `syncd run --only capture` drains {changes:,} changes written before it "
            "started; no consumer",
        )
        for mode in ("logical", "outbox"):
            say(f"capture ({mode}): writing {changes:,} changes, then draining them")
            run = capture.measure(
                self.postgres,
                self.workdir / f"capture_{mode}",
                self.broker.port,
                mode,
                changes,
                self.service_pids(),
                DRAIN_TIMEOUT_S,
            )
            self.report_capture(mode, run)

    def report_capture(self, mode: str, run: capture.CaptureRun) -> None:
        published, read_back = run.published, run.read_back
        key = f"capture_{mode}"
        self.add(
            f"{key}_rate",
            f"{mode}: rate, first publish → last (queue's enqueue count)",
            published.rate,
            "events/s",
        )
        cores = " / ".join(f"{used:.2f}" for used in published.cores.values())
        label = f"{mode}: CPU meanwhile: {' / '.join(published.cores)}"
        self.add(f"{key}_cpu", label, cores, "cores")
        self.add(
            f"{key}_startup_s", f"{mode}: daemon start → first publish", published.startup_s, "s"
        )
        self.add(
            f"{key}_published",
            f"{mode}: published, of {run.backlog.changes:,} changes (enqueue count)",
            published.enqueued,
            "events",
        )
        self.add(
            f"{key}_lost",
            f"{mode}: lost (the queue read back)",
            read_back.lost,
            "events",
            f"{read_back.messages} messages read back, duplicated {read_back.duplicated}, "
            f"unexpected {read_back.unexpected}",
        )
        self.notes[f"{key}_cores"] = published.cores
        self.notes[f"{key}_source_write_s"] = run.backlog.seconds
        self.notes[f"{key}_read_back"] = dataclasses.asdict(read_back)

    # -- 7. verify -----------------------------------------------------------------------------

    def verify_equal(self, rows: int) -> None:
        self.title("verify", f"verify: an equal table of {rows:,} rows, source and target")
        say(f"verify: {rows:,} rows in each table, then verify and COPY")
        run = verify_phase.measure(self.postgres, self.workdir / "verify", rows)
        self.add(
            "verify_rate", "`syncd verify` (digests in both databases)", run.verify_rate, "rows/s"
        )
        self.add("verify_s", "`syncd verify`, the whole table", run.verify_s, "s")
        self.add(
            "verify_copy_rate",
            "COPY … TO STDOUT of both tables, one after the other",
            run.copy_rate,
            "rows/s",
            f"{run.copy_bytes / 2**20:,.0f} MiB",
        )
        self.add(
            "verify_differences",
            "differences found (the tables are equal)",
            run.differences,
            "keys",
        )

    # -- shared -----------------------------------------------------------------------------

    @contextmanager
    def daemon(self, key: str, config: Path, url: str) -> Iterator[tuple[Daemon, sa.Engine]]:
        """A `syncd run` on ``config`` (the phase starts it), stopped gracefully after it;
        then its own count of dead letters, from its last log line."""
        daemon = Daemon(config)
        engine = sa.create_engine(url, pool_size=2)
        try:
            yield daemon, engine
            exit_code = daemon.stop() if daemon.running else None
            if exit_code != 0:
                raise RuntimeError(f"syncd run exited {exit_code}:\n{daemon.log()[-3000:]}")
        finally:
            if daemon.running:
                daemon.kill()
            engine.dispose()
        summary = daemon_phases.stopped_summary(daemon.log())
        self.notes[f"{key}_daemon_summary"] = summary
        dead = summary.get("dead_lettered", float("nan"))
        self.add(f"{key}_dead_lettered", "dead-lettered (the daemon's count)", dead, "events")

    def service_pids(self) -> dict[str, int]:
        """The broker's and PostgreSQL's root pids, where we started them (for their CPU)."""
        pids = {}
        if self.broker.dir is not None:
            pids["ActiveMQ"] = int((self.broker.dir / "broker.pid").read_text())
        if self.postgres.owned:
            postmaster = (self.postgres.data_dir / "postmaster.pid").read_text().split()[0]
            pids["PostgreSQL"] = int(postmaster)
        return pids

    def report_drain(
        self, key: str, drained: daemon_phases.Drained, engine: sa.Engine, history: workload.History
    ) -> None:
        mismatch = target.compare_rows(engine, history.expected())
        ceiling = self.notes["ceiling_rate"]
        self.add(f"{key}_rate", "rate, first commit → last", drained.rate, "events/s")
        self.add(
            f"{key}_vs_ceiling",
            "… of the ceiling (ACK every 100)",
            drained.rate / ceiling * 100,
            "%",
        )
        self.add(
            f"{key}_wrong_rows",
            "wrong rows (missing, extra or different)",
            mismatch.wrong_rows,
            "rows",
            f"missing {mismatch.missing}, extra {mismatch.extra}, different {mismatch.different}",
        )
        cores = " / ".join(f"{used:.2f}" for used in drained.cores.values())
        self.add(f"{key}_cpu", f"CPU meanwhile: {' / '.join(drained.cores)}", cores, "cores")
        self.notes[f"{key}_cores"] = drained.cores
        self.add(f"{key}_startup_s", "daemon start → first commit", drained.startup_s, "s")

    def report_memory(self, key: str, label: str, daemon: Daemon) -> None:
        assert daemon.process is not None
        memory = daemon_phases.peak_rss_mib(daemon.process.pid)
        self.add(f"{key}_peak_rss_mib", label, memory["VmHWM"], "MiB")


@contextmanager
def services(workdir: Path) -> Iterator[tuple[Broker, PostgresCluster]]:
    """A broker and a PostgreSQL cluster of our own, started side by side, always stopped."""
    say("starting ActiveMQ and PostgreSQL")
    with ThreadPoolExecutor(2) as pool:
        broker_started = pool.submit(Broker.start, workdir / "broker")
        postgres_started = pool.submit(PostgresCluster.start, workdir / "postgres")
    broker = broker_started.result() if broker_started.exception() is None else None
    postgres = postgres_started.result() if postgres_started.exception() is None else None
    try:
        if broker is None or postgres is None:
            raise RuntimeError("a service did not start") from (
                broker_started.exception() or postgres_started.exception()
            )
        yield broker, postgres
    finally:
        say("stopping ActiveMQ and PostgreSQL")
        if postgres is not None:
            postgres.destroy()
        if broker is not None:
            broker.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="syncd-bench-run-") as directory:
        workdir = Path(directory)
        workdir.chmod(0o755)  # the postgres user must reach its cluster under it
        with services(workdir) as (broker, postgres):
            bench = Bench(args, workdir, broker, postgres)
            bench.run_all()
            machine = machine_facts(broker, postgres.url("postgres"))
    settings = {**vars(args), "json": str(args.json), "wall_s": round(time.monotonic() - started)}
    print(render_table(bench.metrics, bench.table_sections()))
    write_json(args.json, bench.metrics, machine, settings, bench.notes)
    say(f"wrote {args.json} ({settings['wall_s']} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
