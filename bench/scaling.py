"""``python -m bench.scaling [--events N] [--daemons 1,2,3]``: one job, several daemons.

For each daemon count K, N single-event messages (grouped by key, as syncd's publisher sends
them) are pre-loaded on one queue; then K ``syncd run`` on one config.yaml start at once and
drain it. The rate is N over the time from the first commit any of them makes to the moment
every key holds its last position; the CPU of the daemons, ActiveMQ and PostgreSQL is taken
over the same interval. Not a test: it prints a table and writes var/scaling.json.

With message groups, ActiveMQ hands each key to one daemon, so K daemons share the keys; the
positions table (per key) is the proof that nothing went backwards: the drain ends only when
every key's position is its last event's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from bench import consumers, sending, target, workload
from bench.daemon_phases import cpu_seconds
from bench.run import services
from tests.harness import Daemon, write_config
from tests.services import Broker, PostgresCluster

REPO = Path(__file__).resolve().parent.parent
POLL_INTERVAL_S = 0.05
WARMUP_MESSAGES = 20_000
TIMEOUT_S = 900
_runs = itertools.count(1)


@dataclass(frozen=True)
class Scaled:
    daemons: int
    events: int
    seconds: float
    cores: dict[str, float]
    wrong_rows: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _progress(engine: sa.Engine) -> tuple[int, int]:
    """(keys with a position, the sum of their positions); (0, 0) before the table exists."""
    query = sa.text("SELECT count(*), coalesce(sum(position), 0) FROM syncd_positions")
    try:
        with engine.connect() as conn:
            keys, total = conn.execute(query).one()
            return int(keys), int(total)
    except sa.exc.ProgrammingError:
        return 0, 0


def warm_up(broker: Broker) -> None:
    """A cold broker (JIT, KahaDB) would slow the first daemon count measured, not the others."""
    say(f"warming the broker up with {WARMUP_MESSAGES:,} messages")
    history = workload.customer_history("scale_warmup", WARMUP_MESSAGES, seed=0)
    destination = "/queue/bench.scale_warmup"
    sending.preload(broker.port, destination, sending.single_event_items(history.events))
    consumers.consume_bare(broker.port, destination, WARMUP_MESSAGES, ack_every=100)


def measure(
    workdir: Path, broker: Broker, postgres: PostgresCluster, daemons: int, events: int
) -> Scaled:
    system = f"scale{daemons}_{next(_runs)}"
    history = workload.customer_history(system, events, seed=daemons)
    # Every key's last position, summed: the drain is over when the positions table says so.
    last: dict[int, int] = {}
    for event in history.events:
        last[event["after"]["id"]] = event["source"]["seq"]
    done = (len(last), sum(last.values()))
    url = target.create_target(postgres, f"bench_{system}")
    directory = workdir / system
    directory.mkdir()
    config = write_config(
        directory,
        broker.port,
        url,
        workload.mappings_yaml(system),
        dead_letter_queue=f"/queue/bench.{system}.DLQ",
    )
    say(f"{daemons} daemon(s): pre-loading {events:,} messages")
    sending.preload(
        broker.port, f"/queue/syncd.{system}", sending.single_event_items(history.events)
    )
    assert broker.dir is not None and postgres.owned
    roots = {
        "ActiveMQ": int((broker.dir / "broker.pid").read_text()),
        "PostgreSQL": int((postgres.data_dir / "postmaster.pid").read_text().split()[0]),
    }
    engine = sa.create_engine(url, pool_size=1)
    running = [
        Daemon(config, log_path=directory / f"syncd-{n}.log").start() for n in range(daemons)
    ]
    try:
        started = time.perf_counter()
        first: tuple[float, dict[str, float]] | None = None
        while True:
            progress = _progress(engine)
            now = time.perf_counter()
            pids = {f"syncd{n}": d.process.pid for n, d in enumerate(running) if d.process}
            if progress[0] and first is None:
                first = (now, cpu_seconds({**roots, **pids}))
            if progress == done and first is not None:
                used = cpu_seconds({**roots, **pids})
                elapsed = now - first[0]
                cores = {k: (used[k] - first[1][k]) / elapsed for k in used}
                break
            if now - started > TIMEOUT_S or not all(d.running for d in running):
                raise RuntimeError(f"{daemons} daemons: not drained ({progress} of {done})")
            time.sleep(POLL_INTERVAL_S)
        syncd_cores = sum(v for k, v in cores.items() if k.startswith("syncd"))
        summary = {"syncd (all)": syncd_cores, **{k: cores[k] for k in roots}}
        wrong = target.compare_rows(engine, history.expected()).wrong_rows
    finally:
        for daemon in running:
            if daemon.running:
                daemon.stop()
        engine.dispose()
    return Scaled(daemons, events, elapsed, summary, wrong)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--daemons", default="1,2,3", help="daemon counts, comma-separated")
    parser.add_argument("--json", type=Path, default=REPO / "var" / "scaling.json")
    args = parser.parse_args(argv)
    results: list[Scaled] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-scaling-") as directory:
        workdir = Path(directory)
        workdir.chmod(0o755)  # the postgres user must reach its cluster under it
        with services(workdir) as (broker, postgres):
            warm_up(broker)
            for count in (int(part) for part in args.daemons.split(",")):
                results.append(measure(workdir, broker, postgres, count, args.events))
                say(f"{count} daemon(s): {results[-1].rate:,.0f} events/s")
    print("| daemons | events/s | × one | CPU: syncd (all) / ActiveMQ / PostgreSQL | wrong rows |")
    print("|---|---|---|---|---|")
    for result in results:
        cores = " / ".join(f"{v:.2f}" for v in result.cores.values())
        ratio = result.rate / results[0].rate
        print(
            f"| {result.daemons} | {result.rate:,.0f} | {ratio:.2f} | {cores} "
            f"| {result.wrong_rows} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = [{**asdict(r), "rate": r.rate} for r in results]
    args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
