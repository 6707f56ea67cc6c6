"""The daemon's STOMP connection to ActiveMQ: subscribe, receive, settle, send confirmed.

One thread owns the connection (dramatiq's ConsumerThread): every frame syncd writes —
CONNECT, SUBSCRIBE, ACK, BEGIN, SEND, COMMIT, DISCONNECT — goes out from the owner thread,
which takes commands from a queue and hands each caller its result. The apply loop, its
decode-ahead helper, a reload and the metrics thread may all ask at once; their commands
run one after another, in order. The state they read (connected, the generation, the
subscriptions) is shared under a lock.

stomp.py (imported only under ``syncd/broker/``) reads frames on its own receiver thread,
which also answers heart-beats: the listener callbacks here only hand frames over (the inbox,
a receipt event) and never do work, so a slow batch cannot make the broker think the daemon
is dead. stomp.py does not reconnect after a drop and ``connect(wait=True)`` never times
out, so connecting — host by host, in order, each with a deadline — is
``connection.connect_first``'s, and reconnecting is the caller's loop's job (``connected``
tells it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from syncd.broker import Message, Outgoing
from syncd.broker.connection import STOMP_ERRORS, Listener, connect_first, quietly_disconnect
from syncd.config import BrokerConfig
from syncd.errors import BrokerRefused, BrokerUnavailable

log = logging.getLogger(__name__)

CAUSE_GRACE_S = 2.0  # how long a refused commit waits for the ERROR that says why
T = TypeVar("T")


class _Listener(Listener):
    """Runs on stomp.py's receiver thread: hand over, never block."""

    def __init__(self, broker: StompBroker, inbox: _Inbox, generation: int):
        super().__init__()
        self._broker = broker
        self._inbox = inbox
        self._generation = generation

    def on_message(self, frame: Any) -> None:
        headers = frame.headers  # a dict of this frame's own, not shared
        body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
        self._inbox.put(
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


class _Owner:
    """The one thread that writes to a connection: runs commands from a queue, in order.

    Started by the first command and stopped by :meth:`stop` (a closed broker keeps no
    thread); a command after that starts it again. A command given on the owner thread
    itself (one command calling another) runs at once.
    """

    def __init__(self, name: str):
        self._name = name
        # Each thread has a queue of its own: a thread stopping while the next one starts
        # never takes (and runs) a command meant for its successor.
        self._commands: _Commands = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # starting and stopping the thread

    def run(self, command: Callable[[], T]) -> T:
        """``command()`` on the owner thread; its result, or its exception raised here."""
        if threading.current_thread() is self._thread:
            return command()
        future: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                self._commands = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=_work, args=(self._commands,), name=self._name, daemon=True
                )
                self._thread.start()
            self._commands.put((command, future))
        return future.result()

    def stop(self) -> None:
        """Let the commands given so far run, then end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._commands.put(None)
        if thread is not threading.current_thread():
            thread.join()


_Commands = queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None]


def _work(commands: _Commands) -> None:
    """An owner thread: run its commands in order until told to stop (None)."""
    while (item := commands.get()) is not None:
        command, future = item
        try:
            future.set_result(command())
        except BaseException as exc:  # the caller decides: it is raised in its thread
            future.set_exception(exc)


class StompBroker:
    """A STOMP 1.2 connection: subscribe, receive, cumulative ack, and transactional sends."""

    def __init__(
        self, config: BrokerConfig, client_name: str = "syncd", exclusive: Iterable[str] = ()
    ):
        self._config = config
        # Queues of whole source transactions: ActiveMQ's exclusive consumer, the others wait.
        self._exclusive = frozenset(exclusive)
        self._client_name = client_name
        self._owner = _Owner(f"stomp-{client_name}")
        # The owner thread's alone.
        self._conn: Any = None
        self._listener: _Listener | None = None
        self._where = ""  # host:port of the connection
        self._subscription_count = 0
        # Read by the apply loop, its decode-ahead helper, the metrics thread and stomp.py's
        # receiver thread: under the lock.
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscriptions: dict[str, str] = {}
        self._receipts: dict[str, threading.Event] = {}
        self._failed_receipts: set[str] = set()
        # One for the broker's life: what an older connection delivered is passed over.
        self._inbox = _Inbox()

    # -- connection -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def connect(self) -> None:
        """Connect to the first host that answers, in the configured order, and resubscribe."""
        self._owner.run(self._connect)

    def close(self) -> None:
        """Disconnect; undelivered and unacknowledged messages go back to the broker."""
        self._owner.run(self._disconnect)
        self._owner.stop()

    def _connect(self) -> None:
        self._disconnect()
        generation = self.generation
        conn, listener, where = connect_first(
            self._config, lambda: _Listener(self, self._inbox, generation), self._client_name
        )
        self._conn, self._listener, self._where = conn, listener, where
        with self._lock:
            self._connected = True
            subscriptions = list(self._subscriptions.items())
        log.info("connected to broker %s", where)
        for destination, subscription in subscriptions:
            self._subscribe(destination, subscription)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        with self._lock:
            self._connected = False
            self._generation += 1  # what the old connection delivered is passed over
        if conn is not None:
            quietly_disconnect(conn)

    def _lost(self) -> None:
        """The connection failed under a command: the caller's loop reconnects."""
        with self._lock:
            self._connected = False

    def _dropped(self, generation: int) -> None:
        """stomp.py's receiver thread: the connection of ``generation`` ended."""
        with self._lock:
            if generation == self._generation:
                self._connected = False
                for event in self._receipts.values():
                    event.set()  # wake waiters: their receipt will never come

    # -- consuming ------------------------------------------------------------------------

    def subscribe(self, destination: str) -> None:
        """Subscribe with cumulative client acks; remembered for reconnects."""
        self._owner.run(lambda: self._add_subscription(destination))

    def unsubscribe(self, destination: str) -> None:
        """Stop consuming ``destination``; what it delivered but we did not settle goes back."""
        self._owner.run(lambda: self._remove_subscription(destination))

    @property
    def destinations(self) -> list[str]:
        with self._lock:
            return list(self._subscriptions)

    def subscribed(self, destination: str) -> bool:
        with self._lock:
            return destination in self._subscriptions

    def _add_subscription(self, destination: str) -> None:
        self._subscription_count += 1
        subscription = f"sub-{self._subscription_count}"
        with self._lock:
            self._subscriptions[destination] = subscription
            connected = self._connected
        if connected:
            self._subscribe(destination, subscription)

    def _remove_subscription(self, destination: str) -> None:
        with self._lock:
            subscription = self._subscriptions.pop(destination, None)
            connected = self._connected
        if subscription is None or not connected:
            return
        try:
            self._conn.unsubscribe(id=subscription)
        except STOMP_ERRORS as exc:
            self._lost()
            raise BrokerUnavailable(f"cannot unsubscribe from {destination}: {exc}") from exc

    def _subscribe(self, destination: str, subscription: str) -> None:
        try:
            self._conn.subscribe(
                destination,
                id=subscription,
                ack="client",
                headers=self._subscribe_headers(destination),
            )
        except STOMP_ERRORS as exc:
            self._lost()
            raise BrokerUnavailable(f"cannot subscribe to {destination}: {exc}") from exc

    def _subscribe_headers(self, destination: str) -> dict[str, str]:
        headers = {"activemq.prefetchSize": str(self._config.prefetch)}
        if destination in self._exclusive:
            headers["activemq.exclusive"] = "true"
        return headers

    def receive(self, timeout_s: float) -> Message | None:
        """The next delivered message, waiting up to ``timeout_s``; None if none came.

        Messages of an older connection, or of a destination unsubscribed meanwhile, are
        passed over, unacknowledged: the broker takes them back.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._inbox.get(max(0.0, deadline - time.monotonic()))
            if message is None:
                return None
            with self._lock:
                current = (
                    message.generation == self._generation
                    and message.destination in self._subscriptions
                )
            if current:
                return message

    def settle(self, last: Sequence[Message], dead_letters: Sequence[Outgoing]) -> bool:
        """Acknowledge everything up to each of ``last`` and send ``dead_letters``, together.

        ``last`` holds the newest settled message of each subscription: acks are cumulative.
        With dead letters, their SENDs and the ACKs go in one STOMP transaction, committed with
        a receipt, so a dead letter is never both on the dead-letter queue and redelivered.
        Returns False (nothing acknowledged) if the connection that delivered them is gone:
        the broker redelivers them, and positions make the repeat harmless.
        """
        return self._owner.run(lambda: self._settle(last, dead_letters))

    def _settle(self, last: Sequence[Message], dead_letters: Sequence[Outgoing]) -> bool:
        with self._lock:
            generation, connected = self._generation, self._connected
        current = [m for m in last if m.generation == generation]
        if len(current) != len(last) or not connected:
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
            self._lost()
            return False

    # -- sending --------------------------------------------------------------------------

    def send_confirmed(self, messages: Iterable[Outgoing]) -> None:
        """Send ``messages`` in one transaction and wait for the broker's receipt of the commit.

        ``messages`` may be a stream: each is sent as it comes (whole source transactions,
        ``syncd.capture.logical_atomic``).

        When this returns, every message is on the broker; when it raises ``BrokerUnavailable``,
        none of them is (an uncommitted transaction dies with its connection).
        """
        self._owner.run(lambda: self._send_confirmed(messages))

    def _send_confirmed(self, messages: Iterable[Outgoing]) -> None:
        if not self.connected:
            raise BrokerUnavailable("not connected to the broker")
        transaction = uuid.uuid4().hex
        try:
            self._conn.begin(transaction)
            for message in messages:
                self._send(message, transaction)
            committed = self._commit_or_give_up(transaction)
        except STOMP_ERRORS as exc:
            self._lost()
            raise BrokerUnavailable(f"sending failed: {exc}") from exc
        if not committed:
            listener = self._listener
            if listener is not None and listener.error is not None:
                # ActiveMQ answers a SEND it refuses (a queue the user may not write) with an
                # ERROR; sending again gets the same answer. That ERROR, the cause, was
                # waited for before the connection was given up (_commit_or_give_up).
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
        listener = self._listener
        if listener is not None and listener.error is not None:
            # An ERROR spoiled the commit. ActiveMQ may say why (a SEND it refused) in an ERROR
            # that follows the COMMIT's: read it before hanging up, or it is never read.
            listener.cause_arrived.wait(CAUSE_GRACE_S)
        log.warning("the broker did not confirm a commit: reconnecting, it redelivers the rest")
        self._lost()
        if self._conn is not None:
            quietly_disconnect(self._conn)
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
        return arrived and not failed and self.connected

    def _receipt_arrived(self, receipt: str) -> None:
        """stomp.py's receiver thread: a RECEIPT."""
        with self._lock:
            event = self._receipts.get(receipt)
        if event is not None:
            event.set()

    def _receipt_failed(self, receipt: str | None) -> None:
        """stomp.py's receiver thread: an ERROR that answers ``receipt``."""
        if receipt is None:
            return
        with self._lock:
            self._failed_receipts.add(receipt)
            event = self._receipts.get(receipt)
        if event is not None:
            event.set()
