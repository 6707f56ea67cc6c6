"""``syncd verify``: compare each mapping's source and target, settle what is in flight, repair.

Per mapping: walk the source's keys in chunks of ``CHUNK_ROWS``; digest each chunk on both
sides at once (two connections, two threads: the databases do the work); split a chunk whose
digests differ in two at its middle key until a part holds ``LEAF_ROWS`` rows or fewer, and
compare that part row by row. Keys that differ are compared again once the daemon has caught up
(:mod:`syncd.verify.settle`); with ``--repair`` they get corrective events
(:mod:`syncd.verify.repair`) and are compared again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from syncd.capture.snapshot import connected
from syncd.config import Config
from syncd.errors import ConfigError, Problem
from syncd.mapping import Mapping
from syncd.publisher import Publisher
from syncd.verify.compare import Differences, Verdict, diff_rows
from syncd.verify.plan import SESSION_OPTIONS, Plan, build_plan
from syncd.verify.repair import REPAIR_ROUNDS, repair_keys
from syncd.verify.settle import SETTLE_ROUNDS, Settler
from syncd.verify.sides import Sides

log = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
LEAF_ROWS = 256
MAX_DEPTH = 30  # halvings of one chunk: only a table changing under verify gets near it
PROGRESS_EVERY_S = 0.5


def choose_mappings(
    config: Config, mappings: Sequence[Mapping], names: Sequence[str] | None
) -> list[Mapping]:
    """The mappings to verify: those named, or every one whose source is a capture source.

    ``ConfigError`` for an unknown name, a named mapping verify cannot compare, or none at all.
    """
    if names:
        known = {m.name: m for m in mappings}
        unknown = [name for name in names if name not in known]
        if unknown:
            listed = ", ".join(known) or "none"
            message = f"--mapping: no mapping named {', '.join(unknown)} (there are: {listed})"
            raise ConfigError([Problem(str(config.mappings_dir), None, message)])
        chosen = [known[name] for name in dict.fromkeys(names)]
        problems = [p for p in (_unverifiable(config, m) for m in chosen) if p]
        if problems:
            raise ConfigError(problems)
        return chosen
    chosen = []
    for mapping in mappings:
        problem = _unverifiable(config, mapping)
        if problem is None:
            chosen.append(mapping)
        else:
            log.info("verify: skipped: %s", problem)
    if not chosen:
        message = (
            "verify compares mappings whose source system is a capture source (sources: in "
            "config.yaml, PostgreSQL) with a PostgreSQL target; there is none"
        )
        raise ConfigError([Problem(str(config.path), None, message)])
    return chosen


def _unverifiable(config: Config, mapping: Mapping) -> Problem | None:
    source = config.sources.get(mapping.source_system)
    if source is None:
        return Problem(
            mapping.file,
            mapping.line,
            f"mapping '{mapping.name}': its source system {mapping.source_system} is not a "
            "capture source (sources: in config.yaml), so verify cannot read its rows",
        )
    backends = {
        f"source {source.name}": source.url.get_backend_name(),
        f"database {mapping.target_database}": sa.make_url(
            config.databases[mapping.target_database].url
        ).get_backend_name(),
    }
    for what, backend in backends.items():
        if backend != "postgresql":
            return Problem(
                mapping.file,
                mapping.line,
                f"mapping '{mapping.name}': {what} is {backend}; verify compares PostgreSQL "
                "sources and targets only",
            )
    return None


def verify(
    config: Config,
    mappings: Sequence[Mapping],
    repair: bool,
    progress: TextIO | None = None,
) -> list[Verdict]:
    """Verify (and with ``repair``, repair) each of ``mappings``; one verdict each."""
    verdicts = []
    with ExitStack() as stack:
        publisher = stack.enter_context(Publisher(config, mappings)) if repair else None
        for mapping in mappings:
            verdict = _verify_mapping(config, mapping, publisher, progress)
            counts = verdict.remaining.counts()
            log.info(
                "verify %s: %d rows compared, %d missing, %d extra, %d different%s",
                mapping.name,
                verdict.remaining.compared,
                counts["missing"],
                counts["extra"],
                counts["different"],
                f" (after {verdict.repaired} corrective events)" if verdict.found else "",
            )
            verdicts.append(verdict)
    return verdicts


def _verify_mapping(
    config: Config, mapping: Mapping, publisher: Publisher | None, progress: TextIO | None
) -> Verdict:
    source = config.sources[mapping.source_system]
    target_url = config.databases[mapping.target_database].url
    with ExitStack() as stack:
        source_conn = stack.enter_context(_session(sa.make_url(source.url)))
        target_conn = stack.enter_context(_session(sa.make_url(target_url)))
        plan = build_plan(mapping, source, source_conn, target_conn)
        capture = None
        if not plan.in_sql or publisher is not None:
            capture = stack.enter_context(connected(source))
        sides = Sides(plan, source_conn, capture, target_conn)
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="verify-source"))
        shown = _Progress(mapping.name, _estimate(source_conn, plan), progress)
        found = _walk(sides, pool, shown)
        shown.done()
        settler = Settler(config.broker, source, source_conn)
        _settle(sides, settler, found)
        verdict = Verdict(mapping.name, mapping.key, found)
        if publisher is None or not found.keys():
            return verdict
        outbox = None
        if source.capture == "outbox":
            outbox = stack.enter_context(_engine(source.url, autocommit=False))
        verdict.found = Differences(
            found.compared, set(found.missing), set(found.extra), set(found.different)
        )
        for _ in range(REPAIR_ROUNDS):
            keys = found.keys()
            if not keys:
                break
            verdict.repaired += repair_keys(
                sides, keys, publisher, config.apply.positions_table, outbox
            )
            _settle(sides, settler, found)
        return verdict


def _walk(sides: Sides, pool: ThreadPoolExecutor, progress: _Progress) -> Differences:
    """Compare the whole table, chunk by chunk in key order."""
    found = Differences()
    lo: str | None = None
    while True:
        hi = sides.boundary(lo, CHUNK_ROWS - 1)
        compare = _bisect if sides.plan.in_sql else _rows
        part = compare(sides, pool, lo, hi)
        found.add(part)
        progress.advance(part.compared)
        if hi is None:
            return found
        lo = hi


def _bisect(
    sides: Sides, pool: ThreadPoolExecutor, lo: str | None, hi: str | None, depth: int = 0
) -> Differences:
    """Differences in ``(lo, hi]``: digests first, halves of a differing range, rows last."""
    source_future = pool.submit(sides.source_summary, lo, hi)
    held = sides.target_summary(lo, hi)
    expected = source_future.result()
    if expected == held:
        return Differences(compared=expected.rows)
    # The middle is looked up within (lo, hi]: rows deleted meanwhile cannot push it out.
    middle = None
    if expected.rows > LEAF_ROWS and depth < MAX_DEPTH:
        middle = sides.boundary(lo, expected.rows // 2 - 1, hi)
    if middle is None or middle == hi:
        return _rows(sides, pool, lo, hi)
    found = _bisect(sides, pool, lo, middle, depth + 1)
    found.add(_bisect(sides, pool, middle, hi, depth + 1))
    return found


def _rows(sides: Sides, pool: ThreadPoolExecutor, lo: str | None, hi: str | None) -> Differences:
    source_future = pool.submit(sides.source_range, lo, hi)
    held = sides.target_range(lo, hi)
    return diff_rows(source_future.result(), held, sides.plan.counts_extra)


def _settle(
    sides: Sides, settler: Settler, found: Differences, rounds: int = SETTLE_ROUNDS
) -> None:
    """Compare the differing keys again, each time after the daemon caught up, until they
    look the same twice running (not in flight) or the rounds are over; ``found`` keeps what
    still differs."""
    previous = None
    for _ in range(rounds):
        keys = found.keys()
        if not keys:
            return
        settler.settle()
        again, looked = sides.compare_keys(keys)
        found.replace(keys, again)
        if looked == previous:
            return
        previous = looked


def _estimate(conn: Connection, plan: Plan) -> int | None:
    """The planner's row count of the source table (for the ETA), or None if unknown."""
    sql = "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"
    found = conn.execute(sa.text(sql), {"name": plan.source_name}).scalar()
    return int(found) if found is not None and found > 0 else None


@contextmanager
def _session(url: sa.URL) -> Iterator[Connection]:
    with _engine(url) as engine, engine.connect() as conn:
        yield conn


@contextmanager
def _engine(url: sa.URL, autocommit: bool = True) -> Iterator[Engine]:
    # AUTOCOMMIT: every query sees what is committed now, and no transaction is held open.
    # (Not for the outbox repair, whose lock must last its transaction.)
    engine = sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
        connect_args={"options": SESSION_OPTIONS, "connect_timeout": 10},
    )
    try:
        yield engine
    finally:
        engine.dispose()


class _Progress:
    """Rows compared, rows/s and the time left, on one terminal line (only on a terminal)."""

    def __init__(self, mapping: str, estimate: int | None, stream: TextIO | None) -> None:
        self._mapping = mapping
        self._estimate = estimate
        self._stream = stream if stream is not None and stream.isatty() else None
        self._rows = 0
        self._started = time.monotonic()
        self._shown = 0.0
        self._clock: Callable[[], float] = time.monotonic

    def advance(self, rows: int) -> None:
        self._rows += rows
        now = self._clock()
        if self._stream is None or now - self._shown < PROGRESS_EVERY_S:
            return
        self._shown = now
        rate = self._rows / max(now - self._started, 1e-6)
        line = f"verify {self._mapping}: {self._rows:,} rows, {rate:,.0f} rows/s"
        if self._estimate and self._estimate > self._rows and rate > 0:
            line += f", about {(self._estimate - self._rows) / rate:,.0f} s left"
        self._stream.write(f"\r{line}\033[K")
        self._stream.flush()

    def done(self) -> None:
        if self._stream is not None and self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()


def report(verdicts: Sequence[Verdict], as_json: bool, out: TextIO) -> None:
    from syncd import jsonvalue

    for verdict in verdicts:
        if as_json:
            out.write(jsonvalue.dumps(verdict.as_json()) + "\n")
        else:
            out.write("\n".join(verdict.lines()) + "\n")
