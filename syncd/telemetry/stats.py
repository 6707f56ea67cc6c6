"""Counters of what the daemon did, and the periodic summary line in the log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from syncd.apply import evolve
from syncd.apply.plan import Verdict
from syncd.deadletter.letters import Reason
from syncd.telemetry.metrics import Metrics

log = logging.getLogger("syncd")


class Stats:
    """Per-mapping counts of applied, skipped (duplicate, stale) and dead-lettered events, and
    per-source counts of captured ones — for the log's summary lines, systemd's STATUS and the
    Prometheus metrics alike."""

    def __init__(self, report_every_s: float = 30.0, metrics: Metrics | None = None):
        self._lock = threading.Lock()
        self.metrics = metrics or Metrics()
        self.metrics.lag_from(self.newest_source_ts_ms)
        self.metrics.schema_changes_from(evolve.CHANGES.snapshot)
        self.verdicts: Counter[tuple[str, Verdict]] = Counter()
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self._report_every_s = report_every_s
        self._last_report = time.monotonic()
        self._reported_total = 0
        self.source_ts_ms: dict[str, int] = {}  # per mapping: source time of the newest applied
        self._rate_mark = (time.monotonic(), 0)
        self.captured: Counter[str] = Counter()  # per source: published, broker-confirmed
        self._capture_rate_marks: dict[str, tuple[float, int]] = {}
        self._capture_reports: dict[str, tuple[float, int]] = {}

    def count_batch(self, counts: Counter[tuple[str, Verdict]], newest: dict[str, int]) -> None:
        """A batch's verdicts per mapping, and per mapping the newest applied source time."""
        with self._lock:
            self.verdicts.update(counts)
            for mapping, ts in newest.items():
                self.source_ts_ms[mapping] = max(self.source_ts_ms.get(mapping, 0), ts)
        for (mapping, verdict), n in counts.items():
            if verdict is Verdict.APPLIED:
                self.metrics.applied.labels(mapping).inc(n)
            else:
                self.metrics.skipped.labels(mapping, str(verdict)).inc(n)

    def lag_s(self) -> float | None:
        """How far behind its source the most lagging mapping is: now minus the source time of
        its newest applied event (None before any event with a source time was applied)."""
        with self._lock:
            if not self.source_ts_ms:
                return None
            return max(0.0, time.time() - min(self.source_ts_ms.values()) / 1000)

    def rate(self) -> float:
        """Events handled per second since the previous call."""
        now = time.monotonic()
        with self._lock:
            total = sum(self.verdicts.values()) + sum(self.dead_letters.values())
        then, before = self._rate_mark
        self._rate_mark = (now, total)
        return (total - before) / (now - then) if now > then else 0.0

    def skipped_messages(self, reasons: list[str]) -> None:
        """Debezium messages that change no row (tombstones, heartbeats, transaction metadata):
        ``syncd_events_skipped_total{mapping="-", reason=…}``, as no mapping is theirs."""
        for reason in reasons:
            self.metrics.skipped.labels("-", reason).inc()

    def dead_lettered(self, reason: Reason) -> None:
        labels = (reason.mapping or "-", str(reason.error_class))
        with self._lock:
            self.dead_letters[labels] += 1
        self.metrics.dead_lettered.labels(*labels).inc()

    def transactions_in_hand(self, sizes: list[int]) -> None:
        """The largest source transaction of the batch being applied, in events (``sizes``:
        the events of each whole transaction in the batch)."""
        self.metrics.transaction_in_hand.set(max(sizes, default=0))

    def count_transactions(self, sizes: list[int]) -> None:
        """Whole source transactions applied: how many, and how many events each carried."""
        for events in sizes:
            self.metrics.transactions_applied.inc()
            self.metrics.transaction_events.observe(events)

    def count_streamed(self, events: int) -> None:
        """A large source transaction of ``events`` applied part by part."""
        self.metrics.transaction_in_hand.set(events)
        self.metrics.transactions_applied.inc()
        self.metrics.transaction_events.observe(events)

    def retried(self) -> None:
        self.metrics.retries.inc()

    def batch_done(self, seconds: float) -> None:
        self.metrics.batch_seconds.observe(seconds)

    def newest_source_ts_ms(self) -> dict[str, int]:
        with self._lock:
            return dict(self.source_ts_ms)

    def total(self, verdict: Verdict) -> int:
        with self._lock:
            return sum(n for (_, v), n in self.verdicts.items() if v is verdict)

    def count_captured(self, source: str, events: int) -> None:
        """``events`` captured at ``source`` are on the broker (counted once, not per re-send)."""
        with self._lock:
            self.captured[source] += events
        self.metrics.captured.labels(source).inc(events)

    def capture_rate(self, source: str) -> float:
        """Events of ``source`` captured per second since the previous call."""
        now = time.monotonic()
        with self._lock:
            total = self.captured[source]
            then, before = self._capture_rate_marks.get(source, (now, total))
            self._capture_rate_marks[source] = (now, total)
        return (total - before) / (now - then) if now > then else 0.0

    def maybe_report_capture(self, source: str) -> None:
        """Log one line per source and interval, and only if something was captured in it."""
        now = time.monotonic()
        with self._lock:
            total = self.captured[source]
            then, before = self._capture_reports.setdefault(source, (now, total))
            if now - then < self._report_every_s:
                return
            self._capture_reports[source] = (now, total)
        if total != before:
            rate = (total - before) / (now - then)
            context = {"source": source, "captured": total, "rate": f"{rate:.0f}/s"}
            log.info("capture progress", extra={"context": context})

    def summary(self) -> str:
        with self._lock:
            applied = sum(n for (_, v), n in self.verdicts.items() if v is Verdict.APPLIED)
            duplicate = sum(n for (_, v), n in self.verdicts.items() if v is Verdict.DUPLICATE)
            stale = sum(n for (_, v), n in self.verdicts.items() if v is Verdict.STALE)
            dead = sum(self.dead_letters.values())
            captured = "".join(f" captured[{s}]={n}" for s, n in sorted(self.captured.items()))
        return (
            f"applied={applied} duplicate={duplicate} stale={stale} dead_lettered={dead}{captured}"
        )

    def maybe_report(self) -> None:
        """Log one summary line per interval, and only if something happened in it."""
        now = time.monotonic()
        if now - self._last_report < self._report_every_s:
            return
        with self._lock:
            total = sum(self.verdicts.values()) + sum(self.dead_letters.values())
        if total != self._reported_total:
            rate = (total - self._reported_total) / (now - self._last_report)
            log.info("progress: %s rate=%.0f/s", self.summary(), rate)
            self._reported_total = total
        self._last_report = now
