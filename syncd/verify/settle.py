"""Waiting for the stream: a row that changed while verify read it is not a difference.

Verify reads the source and the target at slightly different moments, while capture and apply
run; a key that differs may only be in flight. So such keys are compared again once the
daemon has applied everything the source had committed when the second look began:

1. the source's position now — the WAL flushed so far (logical: every commit is in it), the
   outbox's highest id (outbox);
2. the capture has published past it — logical: the slot's ``confirmed_flush_lsn`` (which the
   capture moves only after the broker's receipt) is past it, or the WAL sender has sent the
   capture everything up to it and the capture has confirmed nothing for ``CAPTURE_IDLE_S``
   (an idle capture confirms only every status interval, 10 s; a busy one confirms every
   batch, so it is waited for until it confirms past the mark); outbox:
   no outbox row at or below that id is left (the relay deletes them after the receipt);
3. the consumer has taken what was on the queue then — the broker's dequeue count (messages
   acknowledged, which the consumer does only after the commit) reaches the enqueue count read
   after step 2.

A key changed again after step 1 may still differ; it is compared again in the next round, a
bounded number of times (``SETTLE_ROUNDS``), until both sides hold the same for it in two
rounds running. A key corrupted in the target differs in every round: only those are
reported.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd.broker.statistics import queue_statistics
from syncd.capture.logical_setup import slot_name
from syncd.capture.outbox_ddl import OUTBOX
from syncd.config import BrokerConfig, SourceConfig
from syncd.errors import BrokerUnavailable

log = logging.getLogger(__name__)

SETTLE_ROUNDS = 6  # looks at a differing key after the first, each after the daemon caught up
SETTLE_TIMEOUT_S = 60.0  # at most this long per wait for capture, and for the consumer
POLL_S = 0.1
CAPTURE_IDLE_S = 1.0  # a capture that confirmed nothing for this long has nothing to publish
STATISTICS_TIMEOUT_S = 5.0


# How far the capture has confirmed, and how far its WAL sender has sent it (NULL unless the
# user may read pg_stat_replication of that connection).
_SLOT_PROGRESS = """
SELECT s.confirmed_flush_lsn - '0/0'::pg_lsn, r.sent_lsn - '0/0'::pg_lsn, s.active
FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = :slot
"""


class Settler:
    """Waits until the daemon has applied what ``source`` had committed (see module doc)."""

    def __init__(
        self,
        broker: BrokerConfig,
        source: SourceConfig,
        conn: Connection,
        timeout_s: float = SETTLE_TIMEOUT_S,
    ) -> None:
        self._broker = broker
        self._source = source
        self._conn = conn
        self._timeout_s = timeout_s
        # What did not catch up once (or is not running) is not waited for again: the later
        # rounds still compare, but verify without a daemon should not wait a minute a round.
        self._stalled: set[str] = set()

    def settle(self) -> None:
        """Return once the daemon has applied past the source's position now (or time is up,
        which is logged: the comparison that follows may then report rows still in flight)."""
        mark = self._mark()
        deadline = time.monotonic() + self._timeout_s
        watch = _Watch()
        while "capture" not in self._stalled and not self._captured(mark, watch):
            if time.monotonic() > deadline:
                self._stall(
                    "capture",
                    f"source {self._source.name}: capture has not published past position "
                    f"{mark} in {self._timeout_s:g} s (is `syncd run` capturing it?)",
                )
            time.sleep(POLL_S)
        if "consumer" not in self._stalled:
            self._drained()

    def _mark(self) -> int:
        if self._source.capture == "logical":
            sql = "SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn"
            return int(self._conn.execute(sa.text(sql)).scalar_one())
        sql = f"SELECT coalesce(max(id), 0) FROM {OUTBOX} WHERE source = :source"
        return int(self._conn.execute(sa.text(sql), {"source": self._source.name}).scalar_one())

    def _captured(self, mark: int, watch: _Watch) -> bool:
        if self._source.capture == "logical":
            confirmed, sent, active = self._conn.execute(
                sa.text(_SLOT_PROGRESS), {"slot": slot_name(self._source.name)}
            ).one_or_none() or (None, None, False)
            if confirmed is not None and int(confirmed) >= mark:
                return True
            if not active:
                self._stall(
                    "capture",
                    f"source {self._source.name}: nothing reads its replication slot (is "
                    "`syncd run` capturing it?)",
                )
                return True
            # Idle: the WAL sender has sent past the mark and the capture has confirmed
            # nothing more for a while — it has nothing left to publish. A busy capture
            # confirms every batch, so it is waited for until it confirms past the mark.
            idle_s = watch.unchanged_s(confirmed)
            return sent is not None and int(sent) >= mark and idle_s >= CAPTURE_IDLE_S
        sql = f"SELECT NOT EXISTS (SELECT 1 FROM {OUTBOX} WHERE source = :source AND id <= :mark)"
        found = self._conn.execute(sa.text(sql), {"source": self._source.name, "mark": mark})
        return bool(found.scalar_one())

    def _drained(self) -> None:
        queue = self._source.queue
        try:
            stats = queue_statistics(self._broker, [queue], STATISTICS_TIMEOUT_S)[queue]
            if stats.consumers == 0:
                self._stall("consumer", f"{queue} has no consumer (is `syncd run` applying it?)")
                return
            goal = stats.enqueued
            deadline = time.monotonic() + self._timeout_s
            while stats.dequeued < goal and time.monotonic() < deadline:
                time.sleep(POLL_S)
                stats = queue_statistics(self._broker, [queue], STATISTICS_TIMEOUT_S)[queue]
            if stats.dequeued < goal:
                self._stall(
                    "consumer", f"{queue}: the consumer has not caught up in {self._timeout_s:g} s"
                )
        except BrokerUnavailable as exc:
            # Without the broker's statistics the consumer cannot be waited for; the rounds
            # that follow still give it time.
            self._stall("consumer", f"cannot read the statistics of {queue}: {exc}")
            time.sleep(1.0)

    def _stall(self, what: str, message: str) -> None:
        if what not in self._stalled:
            self._stalled.add(what)
            log.warning("verify: %s; keys that differ are compared again without waiting", message)


class _Watch:
    """How long a value has stayed the same, across polls."""

    def __init__(self) -> None:
        self._value: object = object()
        self._since = time.monotonic()

    def unchanged_s(self, value: object) -> float:
        now = time.monotonic()
        if value != self._value:
            self._value, self._since = value, now
        return now - self._since
