"""Consumers that are not syncd: the bare stomp.py ceiling, and a naive per-message applier.

The bare consumer does nothing with a message but count it and acknowledge: no decoding, no
database. Its rate is the most one stomp.py connection gets out of this broker, the ceiling
that syncd's own rate is put against. The naive consumer is what one would write first —
one PostgreSQL transaction and one acknowledgement per message — for comparison.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import stomp

PREFETCH = 1000
NAIVE_UPSERT = """INSERT INTO dim_customer (customer_id, full_name, email, score)
                  VALUES (%s, %s, %s, %s)
                  ON CONFLICT (customer_id) DO UPDATE SET full_name = EXCLUDED.full_name,
                      email = EXCLUDED.email, score = EXCLUDED.score"""


@dataclass(frozen=True)
class Consumed:
    """How many messages a consumer took, and in how long (first receive to last)."""

    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")


class _CountingListener(stomp.ConnectionListener):  # type: ignore[misc]
    """Counts and acknowledges on stomp.py's receiver thread: nothing else in the way."""

    def __init__(self, conn: Any, expected: int, ack_every: int):
        self._conn = conn
        self._expected = expected
        self._ack_every = ack_every
        self.count = 0
        self.first = self.last = 0.0
        self.done = threading.Event()

    def on_message(self, frame: Any) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count % self._ack_every == 0 or self.count == self._expected:
            self._conn.ack(frame.headers["ack"])
        if self.count == self._expected:
            self.done.set()


def consume_bare(
    port: int, destination: str, expected: int, ack_every: int, timeout_s: float = 600
) -> Consumed:
    """Receive ``expected`` messages; ``ack_every`` 1 acknowledges each one (client-individual),
    more acknowledges cumulatively (client) every that many and at the end."""
    mode = "client-individual" if ack_every == 1 else "client"
    conn = stomp.Connection12([("127.0.0.1", port)], auto_decode=False)
    listener = _CountingListener(conn, expected, ack_every)
    conn.set_listener("count", listener)
    conn.connect(wait=True)
    try:
        conn.subscribe(
            destination, id="bare", ack=mode, headers={"activemq.prefetchSize": str(PREFETCH)}
        )
        if not listener.done.wait(timeout_s):
            raise RuntimeError(f"bare consumer got {listener.count} of {expected} messages")
        conn.unsubscribe(id="bare")
    finally:
        conn.disconnect()
    return Consumed(listener.count, listener.last - listener.first)


class _Inbox(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: queue.Queue[tuple[float, str, bytes]] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.frames.put((time.perf_counter(), frame.headers["ack"], frame.body))


def consume_naive(port: int, destination: str, expected: int, dsn: str) -> Consumed:
    """Per message: one transaction upserting its row (no position guard), commit, then ack."""
    conn = stomp.Connection12([("127.0.0.1", port)], auto_decode=False)
    inbox = _Inbox()
    conn.set_listener("inbox", inbox)
    conn.connect(wait=True)
    database = psycopg2.connect(dsn)
    first = 0.0
    try:
        conn.subscribe(
            destination,
            id="naive",
            ack="client-individual",
            headers={"activemq.prefetchSize": str(PREFETCH)},
        )
        for _ in range(expected):
            received, ack_id, payload = inbox.frames.get(timeout=60)
            first = first or received
            row = json.loads(payload)["after"]
            with database, database.cursor() as cursor:  # one transaction, committed on exit
                values = (row["id"], row["name"], row["email"].lower(), row["score"])
                cursor.execute(NAIVE_UPSERT, values)
            conn.ack(ack_id)  # after the commit, as any at-least-once consumer must
        last = time.perf_counter()
        conn.unsubscribe(id="naive")
    finally:
        database.close()
        conn.disconnect()
    return Consumed(expected, last - first)
