"""Logical capture for ``transactions: atomic``: each source transaction as parts, streamed.

:class:`AtomicLogicalCapture` reads the slot like :class:`~syncd.capture.logical.LogicalCapture`
but hands out each source transaction as *parts* (``syncd.pipeline.transactions``) while it
reads it:
a part holds at most ``PART_EVENTS`` events, so memory stays bounded however large the
transaction. The runner sends every part of a stream in one STOMP transaction committed with
a receipt — the broker makes the parts visible all at once, or none of them — and only then
confirms the stream's end to the slot. A failure in between (the source or the broker) drops
what was read: :meth:`rewind` disconnects, and the next poll streams again from the confirmed
position.

pgoutput (protocol 1) sends a transaction only once it committed, BEGIN to COMMIT, in commit
order; BEGIN names its xid and its commit record's LSN, which together name the transaction
(``syncd-tx-id``). The part count is not known until COMMIT: the last part says it.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import psycopg2.extras

from syncd import jsonvalue
from syncd.broker import Outgoing
from syncd.broker.parts import PART_BYTES, PART_EVENTS, part_headers
from syncd.capture import Captured, CapturedBatch
from syncd.capture.logical import LogicalCapture
from syncd.capture.logical import _Transaction as Transaction


@dataclass(slots=True)
class CapturedPart:
    """One part of a source transaction, ready to publish."""

    tx_id: str
    number: int  # 1, 2, 3 …
    last: bool
    events: list[Captured]


@dataclass(slots=True)
class PartStream:
    """Parts of whole source transactions, in commit order; iterate once, then confirm ``batch``.

    ``batch.token`` is the end of the last transaction whose last part was iterated; ``events``
    counts the events handed out.
    """

    parts: Iterator[CapturedPart]
    batch: CapturedBatch = field(default_factory=CapturedBatch)
    events: int = 0

    def __iter__(self) -> Iterator[CapturedPart]:
        return self.parts


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


class AtomicLogicalCapture(LogicalCapture):
    """Reads the slot and hands out source transactions as streamed parts."""

    def poll_parts(self, timeout_s: float) -> PartStream | None:
        """Parts of the transactions that are here now (about ``max_batch_events`` events,
        ending at a transaction's end); None if no transaction began within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._translated_errors():
            cursor = self._cursor()
            while True:
                message = cursor.read_message()
                if message is not None:
                    stream = PartStream(iter(()))
                    stream.parts = self._parts(cursor, message, stream)
                    return stream
                if not self._wait_for_wal(cursor, deadline):
                    return None

    def rewind(self) -> None:
        """Forget what was read since the last confirm: the next poll reads it again."""
        self._disconnect()

    def _parts(
        self, cursor: psycopg2.extras.ReplicationCursor, message: object, stream: PartStream
    ) -> Iterator[CapturedPart]:
        with self._translated_errors():
            sent = 0  # parts handed out of the open transaction
            # A full part is held until the transaction goes on: the last part is never empty.
            held: list[Captured] | None = None
            size = 0  # of the open transaction's events in hand, roughly, in bytes
            while True:
                if message is None:
                    if self._open is None:
                        return  # at a transaction's end, and nothing more here now
                    message = self._next_message(cursor)  # the rest is on its way
                before = len(self._open.events) if self._open is not None else 0
                finished = self._consume(message)
                message = None
                current = self._open
                if current is not None:
                    if not self._new(current.final_lsn):
                        current.events.clear()  # published and confirmed before
                        continue
                    if held is not None and current.events:
                        sent += 1
                        yield self._part(current, sent, held, False, stream)
                        held = None
                    size += sum(_size(captured) for captured in current.events[before:])
                    if len(current.events) >= PART_EVENTS or size >= PART_BYTES:
                        held, current.events, size = current.events, [], 0
                if finished is not None:
                    if self._new(finished.final_lsn) and (finished.events or held):
                        if held is not None and finished.events:
                            sent += 1
                            yield self._part(finished, sent, held, False, stream)
                            held = None
                        last = held if held is not None else finished.events
                        yield self._part(finished, sent + 1, last, True, stream)
                        stream.batch.token = finished.end_lsn
                        self._handed_lsn = max(self._handed_lsn, finished.end_lsn)
                    sent, held, size = 0, None, 0
                    if stream.events >= self._max_batch_events:
                        return
                message = cursor.read_message()

    def _new(self, final_lsn: int) -> bool:
        """Whether the transaction committing at ``final_lsn`` is not confirmed yet."""
        return final_lsn >= self._flushed_lsn

    def _part(
        self,
        transaction: Transaction,
        number: int,
        events: list[Captured],
        last: bool,
        stream: PartStream,
    ) -> CapturedPart:
        tx_id = f"{self.source}:{transaction.xid}:{lsn_text(transaction.final_lsn)}"
        stream.events += len(events)
        return CapturedPart(tx_id, number, last, events)

    def _next_message(self, cursor: psycopg2.extras.ReplicationCursor) -> object:
        """The next message, waiting for it (the rest of a transaction is on its way)."""
        while True:
            message = cursor.read_message()
            if message is not None:
                return message
            select.select([cursor.connection], [], [], self._status_interval_s)


def _size(captured: Captured) -> int:
    """Roughly what ``captured`` takes as JSON: its text values' lengths, 16 for the rest."""
    total = 100
    for image in (captured.event.get("before"), captured.event.get("after")):
        for value in (image or {}).values():
            total += len(value) if isinstance(value, str) else 16
    return total


def transaction_parts(source: str, events: Sequence[Captured]) -> Iterator[CapturedPart]:
    """Whole transactions' events (in order, each transaction's together) as parts, by txId."""
    start = 0
    while start < len(events):
        xid = events[start].event["source"].get("txId")
        end = start
        while end < len(events) and events[end].event["source"].get("txId") == xid:
            end += 1
        chunks = range(start, end, PART_EVENTS)
        for number, at in enumerate(chunks, start=1):
            chunk = list(events[at : min(at + PART_EVENTS, end)])
            yield CapturedPart(f"{source}:{xid}", number, number == len(chunks), chunk)
        start = end


def group_of(source: str) -> str:
    """The one message group of an atomic source's queue: one consumer has all of it at a time.

    The daemons subscribe to such a queue as exclusive consumers when their configuration
    names the source; the single group keeps one consumer at a time also where it does not.
    """
    return f"syncd-tx:{source}"


def part_message(queue: str, source: str, part: CapturedPart) -> Outgoing:
    """The message that carries ``part``: its events as a JSON array, with the tx headers."""
    body = jsonvalue.dumps([captured.event for captured in part.events]).encode()
    group = group_of(source)
    headers = {
        "JMSXGroupID": group,
        "syncd-group": group,
        "content-type": "application/json",
        **part_headers(part.tx_id, part.number, part.last),
    }
    return Outgoing(queue, body, headers)
