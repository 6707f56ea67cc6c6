"""A queue as an operator's tool sees it: browse it without taking anything, and take chosen
messages off it — each forwarded elsewhere or dropped — in transactions the broker confirms.

The daemon's :class:`~syncd.broker.stomp.StompBroker` consumes whole queues with cumulative
acks; a tool needs the opposite: look without taking (an ActiveMQ queue browser: SUBSCRIBE with
``browser:true``; the browse ends with a MESSAGE that carries ``browser:end``), then take exactly
the chosen messages and leave the others in place (SUBSCRIBE with ``ack:client-individual`` and
a JMS selector ``JMSMessageID IN (...)``). What ActiveMQ Classic 5.17 does, measured over STOMP:

- a browser sees at most the destination's ``maxBrowsePageSize`` messages (400 unless the
  policy says otherwise), oldest first; the rest stay invisible until those are gone;
- a selector only finds messages the queue has paged in from its store (a consumer whose
  matches lie further back waits forever); browsing pages in what it shows, so messages chosen
  from a browse are found;
- a header longer than 10 KB closes the connection: a selector names at most
  :data:`SELECTOR_MAX_CHARS` characters of ids, and a transaction takes one selector's worth.

Nothing here ever NACKs: ActiveMQ moves a NACKed message to ActiveMQ.DLQ, out of syncd's sight.
What was delivered and not acknowledged when a subscription or connection closes goes back on
the queue, untouched.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from syncd.broker import Message, Outgoing
from syncd.broker.connection import STOMP_ERRORS, Listener, connect_first, quietly_disconnect
from syncd.config import BrokerConfig
from syncd.errors import BrokerUnavailable

log = logging.getLogger(__name__)


# ActiveMQ's default maxBrowsePageSize: a browse that returns this many may have hidden more.
DEFAULT_BROWSE_LIMIT = 400
# ActiveMQ closes the connection on a STOMP header over 10 KB; keep selectors well below.
SELECTOR_MAX_CHARS = 8000
# Messages per selector, and so per transaction: small enough that a commit is quick.
SELECTOR_MAX_IDS = 100


@dataclass(frozen=True, slots=True)
class Moved:
    """What :meth:`QueueTool.move` did."""

    taken: list[Message] = field(default_factory=list)  # off the queue: forwarded or dropped
    missing: list[str] = field(default_factory=list)  # chosen ids that were no longer there


def id_selector(message_ids: Sequence[str]) -> str:
    """A JMS selector that matches exactly these message ids."""
    quoted = ", ".join("'" + message_id.replace("'", "''") + "'" for message_id in message_ids)
    return f"JMSMessageID IN ({quoted})"


def selector_chunks(message_ids: Sequence[str]) -> Iterator[list[str]]:
    """``message_ids`` in order, in chunks whose selector stays within the broker's limits."""
    chunk: list[str] = []
    for message_id in message_ids:
        candidate = [*chunk, message_id]
        if chunk and (
            len(candidate) > SELECTOR_MAX_IDS or len(id_selector(candidate)) > SELECTOR_MAX_CHARS
        ):
            yield chunk
            candidate = [message_id]
        chunk = candidate
    if chunk:
        yield chunk


@dataclass(frozen=True, slots=True)
class _Receipt:
    receipt_id: str


@dataclass(frozen=True, slots=True)
class _Broken:
    reason: str


_Event = Message | _Receipt | _Broken


class _Listener(Listener):
    """Runs on stomp.py's receiver thread: hand every frame over as an event, never block."""

    def __init__(self) -> None:
        super().__init__()
        self.events: queue.Queue[_Event] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        headers = dict(frame.headers)
        body = frame.body if isinstance(frame.body, bytes) else frame.body.encode()
        message_id = headers.get("message-id", "")
        self.events.put(
            Message(
                body=body,
                headers=headers,
                destination=headers.get("destination", ""),
                message_id=message_id,
                ack_id=headers.get("ack") or message_id,
                generation=0,
            )
        )

    def on_receipt(self, frame: Any) -> None:
        self.events.put(_Receipt(frame.headers.get("receipt-id", "")))

    def on_error(self, frame: Any) -> None:
        super().on_error(frame)
        self.events.put(_Broken(f"the broker refused: {self.error}"))

    def on_disconnected(self) -> None:
        super().on_disconnected()
        self.events.put(_Broken("the connection to the broker was lost"))


class QueueTool:
    """One STOMP connection for browsing a queue and moving chosen messages off it.

    >>> with QueueTool(config.broker) as tool:
    ...     messages = tool.browse("/queue/syncd.DLQ")
    ...     tool.move("/queue/syncd.DLQ", [m.message_id for m in messages], forward=drop)
    """

    def __init__(self, config: BrokerConfig, client_name: str = "syncd-dlq"):
        self._config = config
        self._client_name = client_name
        self._conn: Any = None
        self._listener = _Listener()
        self._subscriptions = 0

    def __enter__(self) -> QueueTool:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connection -----------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the first host that answers, in the configured order, each with a deadline."""
        self._conn, self._listener, _where = connect_first(
            self._config, _Listener, self._client_name
        )

    def close(self) -> None:
        """Disconnect; whatever is delivered and not acknowledged goes back on its queue."""
        conn, self._conn = self._conn, None
        if conn is not None:
            quietly_disconnect(conn)

    # -- browsing -------------------------------------------------------------------------

    def browse(self, destination: str) -> list[Message]:
        """The messages on ``destination``, oldest first, left where they are.

        At most the broker's browse limit (``maxBrowsePageSize``, by default
        :data:`DEFAULT_BROWSE_LIMIT`): more stay hidden until these are gone.
        """
        subscription = self._subscribe(destination, "auto", {"browser": "true"})
        messages: list[Message] = []
        try:
            while True:
                message = self._next_message(subscription)
                if message is None:
                    raise BrokerUnavailable(
                        f"the broker did not finish browsing {destination} within "
                        f"{self._config.receipt_timeout_s} s"
                    )
                if message.headers.get("browser") == "end":
                    return messages
                messages.append(message)
        finally:
            self._unsubscribe(subscription)

    # -- moving ---------------------------------------------------------------------------

    def move(
        self,
        destination: str,
        message_ids: Sequence[str],
        forward: Callable[[Message], Outgoing | None],
    ) -> Moved:
        """Take the messages ``message_ids`` off ``destination``, and only them.

        ``forward`` says what becomes of each: the message to send in its place, or None to
        drop it. Each chunk's SENDs and ACKs commit in one STOMP transaction, confirmed by a
        receipt: a message is never both forwarded and still on ``destination`` — an
        interruption leaves it on ``destination``, to be moved again. Ids that do not arrive
        (someone took them meanwhile) are reported as ``missing``.
        """
        moved = Moved()
        for chunk in selector_chunks(message_ids):
            try:
                taken = self._move_chunk(destination, chunk, forward)
            except BrokerUnavailable as exc:
                raise BrokerUnavailable(
                    f"{exc} — {len(moved.taken)} of {len(message_ids)} were moved before that; "
                    "the rest are still on the queue"
                ) from exc
            moved.taken.extend(taken)
            arrived = {message.message_id for message in taken}
            moved.missing.extend(i for i in chunk if i not in arrived)
        return moved

    def _move_chunk(
        self,
        destination: str,
        chunk: list[str],
        forward: Callable[[Message], Outgoing | None],
    ) -> list[Message]:
        headers = {"selector": id_selector(chunk), "activemq.prefetchSize": str(len(chunk))}
        subscription = self._subscribe(destination, "client-individual", headers)
        try:
            arrived = self._collect(subscription, set(chunk))
            if arrived:
                self._forward_and_ack(arrived, forward)
            return arrived
        finally:
            # Acknowledged or not, let go: what was not acknowledged goes back on the queue.
            self._unsubscribe(subscription)

    def _collect(self, subscription: str, wanted: set[str]) -> list[Message]:
        """The wanted messages as they arrive; gives up on the rest after a quiet timeout."""
        arrived: list[Message] = []
        while wanted:
            message = self._next_message(subscription)
            if message is None:
                break
            if message.message_id in wanted:
                wanted.discard(message.message_id)
                arrived.append(message)
        return arrived

    def _forward_and_ack(
        self, messages: list[Message], forward: Callable[[Message], Outgoing | None]
    ) -> None:
        transaction = uuid.uuid4().hex
        committed = False
        try:
            self._conn.begin(transaction)
            for message in messages:
                outgoing = forward(message)
                if outgoing is not None:
                    self._send(outgoing, transaction)
                self._conn.ack(message.ack_id, transaction=transaction)
            self._commit(transaction)
            committed = True
        except STOMP_ERRORS as exc:
            raise BrokerUnavailable(f"moving messages failed: {exc}") from exc
        finally:
            if not committed:
                self._quietly_abort(transaction)

    def _send(self, message: Outgoing, transaction: str) -> None:
        headers = {**message.headers, "persistent": "true", "transaction": transaction}
        self._conn.send(message.destination, message.body, headers=headers)

    def _commit(self, transaction: str) -> None:
        receipt = f"commit-{transaction}"
        self._conn.commit(transaction, headers={"receipt": receipt})
        deadline = time.monotonic() + self._config.receipt_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            event = self._next_event(left)
            if isinstance(event, _Receipt) and event.receipt_id == receipt:
                return
        raise BrokerUnavailable(
            f"the broker did not confirm the transaction within {self._config.receipt_timeout_s} s"
        )

    def _quietly_abort(self, transaction: str) -> None:
        # An uncommitted transaction also dies with the connection; aborting just says so now.
        try:
            if self._conn is not None:
                self._conn.abort(transaction)
        except STOMP_ERRORS:
            pass

    # -- frames ---------------------------------------------------------------------------

    def _subscribe(self, destination: str, ack: str, headers: dict[str, str]) -> str:
        if self._conn is None:
            raise BrokerUnavailable("not connected to the broker")
        self._subscriptions += 1
        subscription = f"tool-{self._subscriptions}"
        try:
            self._conn.subscribe(destination, id=subscription, ack=ack, headers=headers)
        except STOMP_ERRORS as exc:
            raise BrokerUnavailable(f"cannot subscribe to {destination}: {exc}") from exc
        return subscription

    def _unsubscribe(self, subscription: str) -> None:
        try:
            if self._conn is not None and self._conn.is_connected():
                self._conn.unsubscribe(id=subscription)
        except STOMP_ERRORS as exc:
            log.debug("unsubscribing %s failed: %s", subscription, exc)

    def _next_message(self, subscription: str) -> Message | None:
        """The next message of ``subscription``; None after ``receipt_timeout_s`` of silence."""
        deadline = time.monotonic() + self._config.receipt_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            event = self._next_event(left)
            if isinstance(event, Message) and event.headers.get("subscription") == subscription:
                return event
        return None

    def _next_event(self, timeout_s: float) -> _Event | None:
        try:
            event = self._listener.events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(event, _Broken):
            raise BrokerUnavailable(event.reason)
        return event
