"""Queue depth and counters from ActiveMQ's statistics plugin, asked over STOMP.

The plugin (``<statisticsBrokerPlugin/>`` in activemq.xml) answers a message sent to
``/queue/ActiveMQ.Statistics.Destination.<queue>`` that carries a ``reply-to``: it sends one
JMS MapMessage per matching queue to the reply destination. A STOMP client reads a MapMessage
only through the ``jms-map-json`` transformation, which needs xstream and jettison on the
broker's class path; without them, or without the plugin, no reply comes at all.

What the plugin does, and this module relies on:

- The query name is a destination *pattern*: ``*`` and ``>`` are wildcards, so one query may
  answer for several queues. Replies are told apart by their ``destinationName``.
- A queue the broker does not know (never sent to since its store was created, or removed)
  gets no reply. The header ``ActiveMQ.Statistics.Destination.List.End.With.Null`` makes the
  plugin send one empty map after the last reply, so "unknown" is an answer, not a timeout.
- Every reply carries the query's ``correlation-id``, which ties it to its query.
- ``size`` (messages on the queue, delivered-but-unacknowledged included) survives a broker
  restart; ``enqueueCount``, ``dequeueCount`` and the others count since the broker started.

Without the plugin the query would be an ordinary message on a queue named
``ActiveMQ.Statistics.Destination.<queue>``; it is sent non-persistent and expiring so that such
a broker does not pile them up.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from syncd.broker.connection import STOMP_ERRORS, Listener, connect_first, quietly_disconnect
from syncd.config import BrokerConfig
from syncd.errors import BrokerUnavailable

QUERY_PREFIX = "/queue/ActiveMQ.Statistics.Destination."
END_OF_LIST_HEADER = "ActiveMQ.Statistics.Destination.List.End.With.Null"
QUERY_TTL_S = 60.0  # an unanswered query (no plugin) expires instead of piling up
_QUEUE_PREFIX = "/queue/"

Counters = Mapping[str, int | float | str]


@dataclass(frozen=True)
class QueueStats:
    """One queue as the broker counts it.

    ``exists`` is False for a queue the broker does not know; its numbers are then 0.
    ``depth`` survives broker restarts; ``enqueued`` and ``dequeued`` count since the broker
    started. ``in_flight`` is None if the broker does not report it.
    """

    queue: str  # the STOMP destination, e.g. /queue/syncd.crm
    exists: bool
    depth: int  # "size": waiting plus delivered-but-unacknowledged
    enqueued: int  # "enqueueCount"
    dequeued: int  # "dequeueCount": acknowledged (or expired, or moved) messages
    consumers: int  # "consumerCount"
    in_flight: int | None  # "inflightCount": delivered, not yet acknowledged
    counters: Counters = field(default_factory=dict, repr=False)  # every field of the reply

    @classmethod
    def from_counters(cls, destination: str, counters: Counters) -> QueueStats:
        """Stats from a parsed reply (see :func:`parse_map_json`)."""

        def number(name: str) -> int:
            value = counters.get(name, 0)
            return int(value) if isinstance(value, int | float) else 0

        in_flight = counters.get("inflightCount")
        return cls(
            queue=destination,
            exists=True,
            depth=number("size"),
            enqueued=number("enqueueCount"),
            dequeued=number("dequeueCount"),
            consumers=number("consumerCount"),
            in_flight=int(in_flight) if isinstance(in_flight, int | float) else None,
            counters=MappingProxyType(dict(counters)),
        )

    @classmethod
    def unknown(cls, destination: str) -> QueueStats:
        """A queue the broker does not know: nothing on it, nobody consuming it."""
        return cls(destination, False, 0, 0, 0, 0, None, MappingProxyType({}))


def queue_statistics(
    config: BrokerConfig, queues: Sequence[str], timeout_s: float
) -> dict[str, QueueStats]:
    """Ask the broker for the statistics of each of ``queues`` (``/queue/NAME`` destinations).

    One STOMP connection to the first of ``config.hosts`` that answers, one query per queue,
    all sent at once; returns once every query is answered, or after ``timeout_s``. A queue the
    broker does not know comes back as :meth:`QueueStats.unknown`.

    Raises :class:`BrokerUnavailable` if no host answers, the connection drops, or the broker
    answers none of the queries (no statistics plugin, or no xstream/jettison for the reply).
    """
    names = {destination: _queue_name(destination) for destination in dict.fromkeys(queues)}
    if not names:
        return {}
    with _connection(config) as connection:
        replies = connection.ask(names, timeout_s)
    if not replies.answered:
        raise BrokerUnavailable(
            f"the broker answered no statistics query within {timeout_s:g} s; it needs "
            "<statisticsBrokerPlugin/> in activemq.xml, and xstream and jettison on its class "
            "path for the jms-map-json transformation"
        )
    return {
        destination: replies.stats.get(destination) or QueueStats.unknown(destination)
        for destination in names
    }


def parse_map_json(body: str | bytes) -> dict[str, Any]:
    """A ``transformation:jms-map-json`` body as a plain dict.

    XStream writes ``{"map": {"entry": [...]}}`` where a number is
    ``{"string": "size", "long": 3}`` but a string is ``{"string": ["brokerName", "x"]}``;
    a single entry loses its list, and an empty map is ``{"map": ""}``.
    """
    document = json.loads(body)
    content = document["map"]
    if not content:
        return {}
    entries = content["entry"]
    if isinstance(entries, dict):
        entries = [entries]
    parsed: dict[str, Any] = {}
    for entry in entries:
        key = entry["string"]
        if isinstance(key, list):
            parsed[key[0]] = key[1]
        else:
            (value,) = (v for k, v in entry.items() if k != "string")
            parsed[key] = value
    return parsed


def _queue_name(destination: str) -> str:
    if not destination.startswith(_QUEUE_PREFIX) or len(destination) == len(_QUEUE_PREFIX):
        raise ValueError(f"{destination!r}: expected a queue destination such as /queue/syncd.DLQ")
    return destination.removeprefix(_QUEUE_PREFIX)


# --- the connection -----------------------------------------------------------------------------


@dataclass
class _Replies:
    stats: dict[str, QueueStats] = field(default_factory=dict)  # by STOMP destination
    answered: set[str] = field(default_factory=set)  # correlation ids with any reply


class _Listener(Listener):
    """Runs on stomp.py's receiver thread: hand frames over, never block."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = threading.Event()  # connection refused by the broker, or dropped
        self.frames: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
        self.frames.put((dict(frame.headers), body))

    def on_error(self, frame: Any) -> None:
        super().on_error(frame)
        self.ended.set()

    def on_disconnected(self) -> None:
        super().on_disconnected()
        self.ended.set()


class _StatisticsConnection:
    def __init__(self, conn: Any, listener: _Listener):
        self._conn = conn
        self._listener = listener

    def ask(self, names: Mapping[str, str], timeout_s: float) -> _Replies:
        """Send a query per queue and gather the replies until all ended or ``timeout_s``."""
        reply_to = f"/temp-queue/syncd-stats-{uuid.uuid4().hex}"
        queries = {f"stats-{uuid.uuid4().hex[:12]}": destination for destination in names}
        expires_ms = int((time.time() + max(QUERY_TTL_S, timeout_s)) * 1000)
        try:
            # Replies are MapMessages: only this transformation lets a STOMP client read them.
            self._conn.subscribe(
                reply_to, id="stats", ack="auto", headers={"transformation": "jms-map-json"}
            )
            for correlation, destination in queries.items():
                headers = {
                    "reply-to": reply_to,
                    "correlation-id": correlation,
                    END_OF_LIST_HEADER: "true",
                    "persistent": "false",
                    "expires": str(expires_ms),
                }
                self._conn.send(QUERY_PREFIX + names[destination], b"", headers=headers)
        except STOMP_ERRORS as exc:
            raise BrokerUnavailable(f"cannot query statistics: {exc}") from exc
        return self._gather(queries, timeout_s)

    def _gather(self, queries: Mapping[str, str], timeout_s: float) -> _Replies:
        replies = _Replies()
        by_name = {f"queue://{_queue_name(d)}": d for d in queries.values()}
        waiting = set(queries)
        deadline = time.monotonic() + timeout_s
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                headers, body = self._listener.frames.get(timeout=min(left, 0.1))
            except queue.Empty:
                if self._listener.ended.is_set():
                    reason = self._listener.error or "the connection dropped"
                    raise BrokerUnavailable(f"statistics query failed: {reason}") from None
                continue
            correlation = headers.get("correlation-id", "")
            if correlation not in queries:
                continue  # a reply to someone else's query, or a late one: not ours
            replies.answered.add(correlation)
            counters = parse_map_json(body)
            if not counters:
                waiting.discard(correlation)  # the end-of-list marker: this query is answered
                continue
            # A wildcard in a queue name makes the plugin answer for every match: keep the
            # reply for exactly the queue that was asked about.
            destination = by_name.get(str(counters.get("destinationName", "")))
            if destination is not None:
                replies.stats[destination] = QueueStats.from_counters(destination, counters)
        return replies


@contextmanager
def _connection(config: BrokerConfig) -> Iterator[_StatisticsConnection]:
    """Connected to the first host that answers, in the configured order; closed after."""
    # No heart-beats: the connection lives for one round of queries.
    conn, listener, _where = connect_first(config, _Listener, "syncd-status", heartbeats=False)
    try:
        yield _StatisticsConnection(conn, listener)
    finally:
        quietly_disconnect(conn)
