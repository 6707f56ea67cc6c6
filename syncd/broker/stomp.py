"""The daemon's STOMP connection to ActiveMQ: subscribe, receive, settle, send confirmed.

stomp.py (imported only under ``syncd/broker/``) runs listener callbacks on its single
receiver thread, which also answers heart-beats: the callbacks here only hand frames over (a
queue, an event) and never do work, so a slow batch cannot make the broker think the daemon is
dead. stomp.py does not reconnect after a drop and
``connect(wait=True)`` never times out, so connecting — host by host, in order, each with a
deadline — is ``connection.connect_first``'s, and reconnecting is the caller's loop's job
(``connected`` tells it).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from syncd.broker import Message, Outgoing
from syncd.broker.connection import STOMP_ERRORS, Listener, connect_first, quietly_disconnect
from syncd.config import BrokerConfig
from syncd.errors import BrokerRefused, BrokerUnavailable

log = logging.getLogger(__name__)

CAUSE_GRACE_S = 2.0  # how long a refused commit waits for the ERROR that says why


class _Listener(Listener):
    """Runs on stomp.py's receiver thread: hand over, never block."""

    def __init__(self, broker: StompBroker, generation: int):
        super().__init__()
        self._broker = broker
        self._generation = generation

    def on_message(self, frame: Any) -> None:
        headers = frame.headers  # a dict of this frame's own, not shared
        body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
        self._broker._inbox.put(
            Message(
                body=body,
                headers=headers,
                destination=headers.get("destination", ""),
                message_id=headers.get("message-id", ""),
                ack_id=str(headers.get("ack") or headers.get("message-id", "")),
                generation=self._generation,
            )
        )

    def on_receipt(self, frame: Any) -> None:
        self._broker._receipt_arrived(frame.headers.get("receipt-id", ""))

    def on_error(self, frame: Any) -> None:
        super().on_error(frame)
        log.warning("broker error: %s", frame.headers.get("message", "") or self.error)
        self._broker._receipt_failed(frame.headers.get("receipt-id"))

    def on_disconnected(self) -> None:
        super().on_disconnected()
        self._broker._dropped(self._generation)


class _Inbox:
    """Delivered messages, handed from stomp.py's receiver thread to the apply loop.

    A deque (its append and popleft are atomic) with an event that is set only when the taker
    may be waiting: under a backlog a hand-over costs no lock and wakes no thread. The event is
    cleared before the taker looks again, so a message put in between is never missed.
    """

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._arrived = threading.Event()

    def put(self, message: Message) -> None:
        self._messages.append(message)
        if not self._arrived.is_set():
            self._arrived.set()

    def get(self, timeout_s: float) -> Message | None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._messages.popleft()
            except IndexError:
                self._arrived.clear()
                if self._messages:
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    return None


class StompBroker:
    """A STOMP 1.2 connection: subscribe, receive, cumulative ack, and transactional sends."""

    def __init__(
        self, config: BrokerConfig, client_name: str = "syncd", exclusive: Iterable[str] = ()
    ):
        self._config = config
        # Queues of whole source transactions: ActiveMQ's exclusive consumer, the others wait.
        self._exclusive = frozenset(exclusive)
        self._client_name = client_name
        self._conn: Any = None
        self._listener: _Listener | None = None
        self._where = ""  # host:port of the connection
        self._generation = 0
        self._connected = False
        self._subscriptions: dict[str, str] = {}
        self._subscription_count = 0
        self._inbox = _Inbox()
        self._receipts: dict[str, threading.Event] = {}
        self._failed_receipts: set[str] = set()
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def generation(self) -> int:
        return self._generation

    def connect(self) -> None:
        """Connect to the first host that answers, in the configured order, and resubscribe."""
        self.close()
        self._generation += 1
        generation = self._generation
        conn, listener, where = connect_first(
            self._config, lambda: _Listener(self, generation), self._client_name
        )
        self._conn, self._listener, self._where = conn, listener, where
        self._connected = True
        log.info("connected to broker %s", where)
        for destination in list(self._subscriptions):
            self._subscribe(destination)

    def _dropped(self, generation: int) -> None:
        if generation == self._generation:
            self._connected = False
            with self._lock:
                for event in self._receipts.values():
                    event.set()  # wake waiters: their receipt will never come

    def close(self) -> None:
        """Disconnect; undelivered and unacknowledged messages go back to the broker."""
        conn, self._conn = self._conn, None
        self._connected = False
        self._generation += 1  # what is still in the inbox belongs to the old connection
        if conn is not None:
            quietly_disconnect(conn)
        self._inbox = _Inbox()

    # -- consuming ------------------------------------------------------------------------

    def subscribe(self, destination: str) -> None:
        """Subscribe with cumulative client acks; remembered for reconnects."""
        self._subscription_count += 1
        self._subscriptions[destination] = f"sub-{self._subscription_count}"
        if self._connected:
            self._subscribe(destination)

    def unsubscribe(self, destination: str) -> None:
        """Stop consuming ``destination``; what it delivered but we did not settle goes back."""
        subscription = self._subscriptions.pop(destination, None)
        if subscription is None or not self._connected:
            return
        try:
            self._conn.unsubscribe(id=subscription)
        except STOMP_ERRORS as exc:
            self._connected = False
            raise BrokerUnavailable(f"cannot unsubscribe from {destination}: {exc}") from exc

    @property
    def destinations(self) -> list[str]:
        return list(self._subscriptions)

    def subscribed(self, destination: str) -> bool:
        return destination in self._subscriptions

    def _subscribe(self, destination: str) -> None:
        try:
            self._conn.subscribe(
                destination,
                id=self._subscriptions[destination],
                ack="client",
                headers=self._subscribe_headers(destination),
            )
        except STOMP_ERRORS as exc:
            self._connected = False
            raise BrokerUnavailable(f"cannot subscribe to {destination}: {exc}") from exc

    def _subscribe_headers(self, destination: str) -> dict[str, str]:
        headers = {"activemq.prefetchSize": str(self._config.prefetch)}
        if destination in self._exclusive:
            headers["activemq.exclusive"] = "true"
        return headers

    def receive(self, timeout_s: float) -> Message | None:
        """The next delivered message, waiting up to ``timeout_s``; None if none came.

        Messages of a destination unsubscribed meanwhile are passed over, unacknowledged:
        the broker takes them back.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._inbox.get(max(0.0, deadline - time.monotonic()))
            if message is None or message.destination in self._subscriptions:
                return message

    def settle(self, last: Sequence[Message], dead_letters: Sequence[Outgoing]) -> bool:
        """Acknowledge everything up to each of ``last`` and send ``dead_letters``, together.

        ``last`` holds the newest settled message of each subscription: acks are cumulative.
        With dead letters, their SENDs and the ACKs go in one STOMP transaction, committed with
        a receipt, so a dead letter is never both on the dead-letter queue and redelivered.
        Returns False (nothing acknowledged) if the connection that delivered them is gone:
        the broker redelivers them, and positions make the repeat harmless.
        """
        current = [m for m in last if m.generation == self._generation]
        if len(current) != len(last) or not self._connected:
            return False
        try:
            if not dead_letters:
                for message in current:
                    self._conn.ack(message.ack_id)
                return True
            transaction = uuid.uuid4().hex
            self._conn.begin(transaction)
            for letter in dead_letters:
                self._send(letter, transaction)
            for message in current:
                self._conn.ack(message.ack_id, transaction=transaction)
            return self._commit_or_give_up(transaction)
        except STOMP_ERRORS as exc:
            log.warning("settling failed, the broker will redeliver: %s", exc)
            self._connected = False
            return False

    # -- sending --------------------------------------------------------------------------

    def send_confirmed(self, messages: Iterable[Outgoing]) -> None:
        """Send ``messages`` in one transaction and wait for the broker's receipt of the commit.

        ``messages`` may be a stream: each is sent as it comes (whole source transactions,
        ``syncd.capture.logical_atomic``).

        When this returns, every message is on the broker; when it raises ``BrokerUnavailable``,
        none of them is (an uncommitted transaction dies with its connection).
        """
        if not self._connected:
            raise BrokerUnavailable("not connected to the broker")
        transaction = uuid.uuid4().hex
        try:
            self._conn.begin(transaction)
            for message in messages:
                self._send(message, transaction)
            committed = self._commit_or_give_up(transaction)
        except STOMP_ERRORS as exc:
            self._connected = False
            raise BrokerUnavailable(f"sending failed: {exc}") from exc
        if not committed:
            listener = self._listener
            if listener is not None and listener.error is not None:
                # ActiveMQ answers a SEND it refuses (a queue the user may not write) with an
                # ERROR; sending again gets the same answer. That ERROR, the cause, may come
                # just after the one of the COMMIT it spoiled.
                listener.cause_arrived.wait(CAUSE_GRACE_S)
                raise BrokerRefused(
                    f"the broker at {self._where} refused the send for user "
                    f"{self._config.user}: {listener.cause or listener.error}"
                )
            raise BrokerUnavailable("the broker did not confirm the transaction")

    def _send(self, message: Outgoing, transaction: str | None) -> None:
        headers = dict(message.headers)
        headers["persistent"] = "true"
        headers.setdefault("content-type", "application/json")
        if transaction:
            headers["transaction"] = transaction
        self._conn.send(message.destination, message.body, headers=headers)

    def _commit_or_give_up(self, transaction: str) -> bool:
        """Commit; if the broker does not confirm it, give the connection up.

        Without a receipt (a timeout, an ERROR) the transaction may or may not have committed,
        and a later cumulative ACK over this connection could then cover messages whose dead
        letters never landed. Disconnecting settles it: ActiveMQ drops an uncommitted
        transaction with its connection and redelivers what that connection did not
        acknowledge, and the caller reconnects.
        """
        if self._commit(transaction):
            return True
        log.warning("the broker did not confirm a commit: reconnecting, it redelivers the rest")
        conn, self._connected = self._conn, False
        if conn is not None:
            quietly_disconnect(conn)
        return False

    def _commit(self, transaction: str) -> bool:
        receipt = f"commit-{transaction}"
        event = threading.Event()
        with self._lock:
            self._receipts[receipt] = event
        try:
            self._conn.commit(transaction, headers={"receipt": receipt})
            arrived = event.wait(self._config.receipt_timeout_s)
        finally:
            with self._lock:
                self._receipts.pop(receipt, None)
                failed = receipt in self._failed_receipts
                self._failed_receipts.discard(receipt)
        return arrived and not failed and self._connected

    def _receipt_arrived(self, receipt: str) -> None:
        with self._lock:
            event = self._receipts.get(receipt)
        if event is not None:
            event.set()

    def _receipt_failed(self, receipt: str | None) -> None:
        if receipt is None:
            return
        with self._lock:
            self._failed_receipts.add(receipt)
            event = self._receipts.get(receipt)
        if event is not None:
            event.set()
