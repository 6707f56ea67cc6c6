"""``syncd run`` under measurement: draining a pre-loaded queue, latency, and memory.

The daemon runs as users run it — a subprocess on a config.yaml and a mapping file
(``tests.harness.Daemon``) — with the shipped defaults for batching and prefetch.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import time
from dataclasses import dataclass
from math import nan
from pathlib import Path

import sqlalchemy as sa

from bench.sending import publish_one_by_one, send_paced
from bench.target import CommitListener, committed_position, dsn, written_at
from bench.workload import ping_event
from syncd.config import load_config
from tests.harness import Daemon

POLL_INTERVAL_S = 0.025
LIBRARY_PROBES = 50  # ~45 ms each while stomp.py leaves Nagle on (see sending.py)


@dataclass(frozen=True)
class Drained:
    """A pre-loaded queue applied: rate from the first commit the poller saw to the last."""

    events: int  # events committed after the first observation (the rate's numerator)
    seconds: float
    startup_s: float  # daemon start to its first observed commit
    cores: dict[str, float]  # CPU each process tree used meanwhile, in cores (CPU s / wall s)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def drain(
    daemon: Daemon,
    engine: sa.Engine,
    mapping: str,
    total: int,
    timeout_s: float,
    services: dict[str, int],
) -> Drained:
    """Start ``daemon`` and poll the positions table until position ``total`` is committed.

    The first poll that sees a commit gives (t_first, p_first); events up to p_first were in
    batches committed before it, so the rate counts only ``total - p_first`` events over
    ``t_last - t_first`` — a polling error of one interval at each end, not a whole batch.
    ``services`` names the root pids (broker, postmaster) whose CPU is measured alongside.
    """
    started = time.perf_counter()
    daemon.start()
    assert daemon.process is not None
    roots = {"syncd": daemon.process.pid, **services}
    first: tuple[float, int, dict[str, float]] | None = None
    deadline = started + timeout_s
    while True:
        position = committed_position(engine, mapping)
        now = time.perf_counter()
        if position and first is None:
            first = (now, position, cpu_seconds(roots))
        if position >= total and first is not None:
            used, elapsed = cpu_seconds(roots), now - first[0]
            # A queue so small that one poll saw it all has no rate: 0 s, NaN cores.
            cores = {k: (used[k] - first[2][k]) / elapsed if elapsed else nan for k in roots}
            return Drained(total - first[1], elapsed, first[0] - started, cores)
        if not daemon.running or now > deadline:
            state = "exited" if not daemon.running else f"not done after {timeout_s:g} s"
            raise RuntimeError(
                f"syncd run {state} at position {position} of {total}:\n{daemon.log()[-3000:]}"
            )
        time.sleep(POLL_INTERVAL_S)


@dataclass(frozen=True)
class Latency:
    """Send-to-visible times of latency probes, in milliseconds."""

    paced_events: int
    achieved_rate: float
    visible_ms: list[float]  # paced probes: SEND to the row's commit NOTIFY
    commit_gap_ms: list[float]  # paced probes: row written (server clock) to commit NOTIFY
    library_visible_ms: list[float]  # one Publisher.publish() each: call to commit NOTIFY
    library_confirm_ms: list[float]  # …and how long that call took


def measure_latency(
    broker_port: int,
    config_path: Path,
    url: str,
    system: str,
    rate: float,
    seconds: float,
) -> Latency:
    """Send probes to an idle daemon at ``rate`` a second for ``seconds``, then a few through
    ``Publisher.publish()`` one at a time; time each from its send to its row's commit.

    ``sent_at`` is taken just before sending and travels in the event; the visible time is
    when PostgreSQL's commit NOTIFY for the row reached this process. Both ends are read from
    this process's clock, so no two clocks are compared.
    """
    queue = load_config(config_path).queue_for(system)
    count = round(rate * seconds)
    probe = functools.partial(ping_event, system)  # (seq, sent_at) -> event
    listener = CommitListener(dsn(url))
    try:
        paced, achieved = send_paced(broker_port, queue, probe, count, rate)
        library_seqs = range(count + 1, count + 1 + LIBRARY_PROBES)
        library, confirm_ms = publish_one_by_one(config_path, probe, library_seqs)
        total = count + LIBRARY_PROBES
        if not listener.wait_for(total, timeout_s=60):
            raise RuntimeError(f"only {len(listener.visible_at)} of {total} probes became visible")
        visible = dict(listener.visible_at)
    finally:
        listener.close()
    written = written_at(url)
    return Latency(
        paced_events=count,
        achieved_rate=achieved,
        visible_ms=[(visible[s] - t) * 1000 for s, t in paced.items()],
        commit_gap_ms=[(visible[s] - written[s]) * 1000 for s in paced],
        library_visible_ms=[(visible[s] - t) * 1000 for s, t in library.items()],
        library_confirm_ms=confirm_ms,
    )


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (inclusive method) of ``values``."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[round(pct * 10) - 1]


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each root process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = int(fields[11]) + int(fields[12])
    per_second = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, root in roots.items():
        tree, todo = 0, [root]
        while todo:
            pid = todo.pop()
            tree += ticks.get(pid, 0)
            todo += children.get(pid, [])
        used[name] = tree / per_second
    return used


def peak_rss_mib(pid: int) -> dict[str, float]:
    """The process's peak (VmHWM) and current (VmRSS) resident memory, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.MULTILINE))
    return {name: int(kb) / 1024 for name, kb in found.items()}


def stopped_summary(log: str) -> dict[str, int]:
    """The counts of the daemon's last ``syncd stopped: applied=… dead_lettered=…`` line."""
    lines = [line for line in log.splitlines() if "syncd stopped" in line]
    if not lines:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1].split("syncd stopped")[1])}
