"""Counters of what the daemon did, and the periodic summary line in the log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from syncd.apply.plan import Verdict
from syncd.deadletter import Reason

log = logging.getLogger("syncd")


class Stats:
    """Per-mapping counts of applied, skipped (duplicate, stale) and dead-lettered events."""

    def __init__(self, report_every_s: float = 30.0):
        self._lock = threading.Lock()
        self.verdicts: Counter[tuple[str, Verdict]] = Counter()
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self._report_every_s = report_every_s
        self._last_report = time.monotonic()
        self._reported_total = 0

    def count(self, mapping: str, verdict: Verdict) -> None:
        with self._lock:
            self.verdicts[mapping, verdict] += 1

    def dead_lettered(self, reason: Reason) -> None:
        with self._lock:
            self.dead_letters[reason.mapping or "-", str(reason.error_class)] += 1

    def total(self, verdict: Verdict) -> int:
        with self._lock:
            return sum(n for (_, v), n in self.verdicts.items() if v is verdict)

    def summary(self) -> str:
        with self._lock:
            applied = sum(n for (_, v), n in self.verdicts.items() if v is Verdict.APPLIED)
            duplicate = sum(n for (_, v), n in self.verdicts.items() if v is Verdict.DUPLICATE)
            stale = sum(n for (_, v), n in self.verdicts.items() if v is Verdict.STALE)
            dead = sum(self.dead_letters.values())
        return f"applied={applied} duplicate={duplicate} stale={stale} dead_lettered={dead}"

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
