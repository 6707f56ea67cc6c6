"""The apply loop's broker contract in memory — dramatiq's StubBroker, for syncd.

It keeps what ActiveMQ keeps for one consumer: queues in order, per subscription the messages
delivered and not yet acknowledged (a cumulative ACK takes every one up to the acknowledged
message), redelivery of those when the connection drops (``redelivered:true``), and dead
letters that land only when their settle does. Tests drive the apply loop on it in milliseconds
and look at every ack and dead letter; the real-broker tests then prove the wiring.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from syncd.broker import Message, Outgoing
from syncd.errors import BrokerUnavailable


@dataclass
class Settled:
    """One settle the loop made: the messages it acknowledged and the dead letters it sent."""

    acknowledged: list[str]  # message ids, in delivery order
    dead_letters: list[Outgoing]


@dataclass
class _Queue:
    waiting: deque[Message] = field(default_factory=deque)
    delivered: list[Message] = field(default_factory=list)  # unacknowledged, in order


class InMemoryBroker:
    """Queues, cumulative acks and transactional dead letters, without a network."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._subscribed: set[str] = set()
        self._ids = itertools.count(1)
        self._generation = 0
        self._connected = False
        self._changed = threading.Condition()
        self.settled: list[Settled] = []
        self.attempted: list[list[Outgoing]] = []  # the dead letters of every settle tried
        self.sent: dict[str, list[Outgoing]] = {}
        self.refuse_connects = 0  # the next this many connect() calls fail
        self.fail_settles = 0  # the next this many settles fail as a dropped connection would

    # -- the contract -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def generation(self) -> int:
        return self._generation

    def connect(self) -> None:
        with self._changed:
            if self.refuse_connects:
                self.refuse_connects -= 1
                raise BrokerUnavailable("no broker answered (in-memory broker told to refuse)")
            self._generation += 1
            self._connected = True

    def subscribe(self, destination: str) -> None:
        with self._changed:
            self._subscribed.add(destination)
            self._queues.setdefault(destination, _Queue())

    def unsubscribe(self, destination: str) -> None:
        """Stop consuming ``destination``: what it delivered unacknowledged goes back."""
        with self._changed:
            self._subscribed.discard(destination)
            self._give_back(self._queues.get(destination))

    def subscribed(self, destination: str) -> bool:
        return destination in self._subscribed

    @property
    def destinations(self) -> list[str]:
        return sorted(self._subscribed)

    def receive(self, timeout_s: float) -> Message | None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                message = self._next() if self._connected else None
                left = deadline - time.monotonic()
                if message is not None or left <= 0:
                    return message
                self._changed.wait(left)

    def settle(self, last: Sequence[Message], dead_letters: Sequence[Outgoing]) -> bool:
        with self._changed:
            self.attempted.append(list(dead_letters))
            if not self._connected or any(m.generation != self._generation for m in last):
                return False
            if self.fail_settles:
                self.fail_settles -= 1
                self._drop()
                return False
            delivered = {m.message_id for q in self._queues.values() for m in q.delivered}
            if any(m.message_id not in delivered for m in last):
                # ActiveMQ answers an ACK of a message it took back with an ERROR and closes
                # the connection; the transaction's dead letters die with it.
                self._drop()
                return False
            acknowledged = []
            for message in last:
                queue = self._queues[message.destination]
                ids = [m.message_id for m in queue.delivered]
                upto = ids.index(message.message_id) + 1
                acknowledged += ids[:upto]
                del queue.delivered[:upto]
            for letter in dead_letters:
                self.sent.setdefault(letter.destination, []).append(letter)
            self.settled.append(Settled(acknowledged, list(dead_letters)))
            return True

    def send_confirmed(self, messages: Sequence[Outgoing]) -> None:
        with self._changed:
            if not self._connected:
                raise BrokerUnavailable("not connected to the broker")
            for message in messages:
                self.sent.setdefault(message.destination, []).append(message)

    def close(self) -> None:
        with self._changed:
            self._drop()

    # -- what tests do to it ---------------------------------------------------------------

    def publish(self, destination: str, body: bytes, headers: dict[str, str] | None = None) -> str:
        """Put a message on ``destination``; returns its message id."""
        with self._changed:
            message_id = f"ID:memory-{next(self._ids)}"
            all_headers = {"message-id": message_id, "destination": destination, **(headers or {})}
            message = Message(body, all_headers, destination, message_id, message_id, 0)
            self._queues.setdefault(destination, _Queue()).waiting.append(message)
            self._changed.notify_all()
            return message_id

    def drop_connection(self) -> None:
        """The connection dies: every unacknowledged message will be redelivered."""
        with self._changed:
            self._drop()

    def unsettled(self) -> int:
        """Messages waiting or delivered and not yet acknowledged, on every queue."""
        with self._changed:
            return sum(len(q.waiting) + len(q.delivered) for q in self._queues.values())

    def acknowledged(self) -> list[str]:
        return [message_id for settled in self.settled for message_id in settled.acknowledged]

    # -- inside ---------------------------------------------------------------------------

    def _next(self) -> Message | None:
        for destination in sorted(self._subscribed):
            queue = self._queues[destination]
            if queue.waiting:
                # A fresh object per delivery, as from a real connection: the loop may still
                # hold the copy an older connection delivered.
                message = replace(queue.waiting.popleft(), generation=self._generation)
                queue.delivered.append(message)
                return message
        return None

    def _drop(self) -> None:
        self._connected = False
        self._generation += 1
        for queue in self._queues.values():
            self._give_back(queue)
        self._changed.notify_all()

    @staticmethod
    def _give_back(queue: _Queue | None) -> None:
        if queue is None:
            return
        for message in reversed(queue.delivered):
            headers = {**message.headers, "redelivered": "true"}
            queue.waiting.appendleft(replace(message, headers=headers))
        queue.delivered.clear()
