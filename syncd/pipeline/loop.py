"""The apply loop: take a batch of messages, apply their events, then settle every message.

It knows messages, events and appliers — not STOMP frames, not SQL. One pass:

1. take up to ``batch_max_messages`` messages, lingering at most ``batch_linger_ms`` for
   stragglers and closing at a pause in the stream (so a batch never waits for messages
   ActiveMQ will not page in before it is acknowledged);
2. decode each message and route each event to its mappings' changes;
3. apply the changes per target database, one transaction each (retries, poison isolation);
4. settle: dead-letter what failed and acknowledge the batch, together.

Steps 1 and 2 of the next batch run on a helper thread while step 3 of this one waits for the
database. Ack after commit: a crash in between only redelivers, and the positions make that
harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from syncd.apply import Applier
from syncd.apply.plan import Verdict
from syncd.apply.resilient import GaveUp, Interrupted, RetryPolicy, Unapplied, apply_isolating
from syncd.backoff import Backoff
from syncd.broker import Message, Outgoing
from syncd.change import Change
from syncd.config import ApplyConfig, RetryConfig
from syncd.deadletter.letters import ErrorClass, Reason, dead_letter
from syncd.errors import (
    BrokerRefused,
    BrokerUnavailable,
    DecodeError,
    MappingApplyError,
    NoMappingError,
)
from syncd.events import BadEvent, Skipped, decode_body
from syncd.pipeline.ledger import DeliveryLedger
from syncd.pipeline.transactions import (
    WHOLE_MESSAGE,
    Framing,
    Unit,
    UnitKind,
    applied_events,
    decoded_later,
    frame,
    groups,
    reject_failed,
    reject_whole,
    set_aside,
    streamed,
    unit_events,
)
from syncd.pipeline.whole import apply_grouped, apply_streamed, streams_everywhere
from syncd.routing import Router
from syncd.telemetry.progress import Progress
from syncd.telemetry.stats import Stats
from syncd.values import printable

log = logging.getLogger(__name__)

PAUSE_S = 0.005  # no message for this long: the batch is as full as it will get soon


class Broker(Protocol):
    """What the loop needs of a broker connection (``syncd.broker.stomp.StompBroker``)."""

    @property
    def connected(self) -> bool: ...

    @property
    def generation(self) -> int: ...

    def connect(self) -> None: ...

    def receive(self, timeout_s: float) -> Message | None: ...

    def subscribed(self, destination: str) -> bool: ...

    def settle(self, last: list[Message], dead_letters: list[Outgoing]) -> bool: ...


@dataclass
class _Pending:
    """One message of the batch, until it is settled."""

    message: Message
    decoded: bool = False  # a redelivered message is decoded only once the ledger counts it
    array: bool = False
    events: list[Any] = field(default_factory=list)
    failures: dict[int, Reason] = field(default_factory=dict)
    # The changes its events make, each with the index of its event in the message.
    changes: list[tuple[int, Change]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why each Debezium non-change was skipped
    # What it is applied with (syncd.pipeline.transactions): itself, or its transaction.
    unit: Unit | None = None


@dataclass
class _Batch:
    """Messages taken together, decoded and routed by the router of ``version``."""

    items: list[_Pending]
    version: int


class ApplyLoop:
    def __init__(
        self,
        broker: Broker,
        router: Router,
        appliers: dict[str, Applier],
        settings: ApplyConfig,
        retry: RetryConfig,
        dead_letter_queue: str,
        stats: Stats,
        ledger: DeliveryLedger,
        progress: Progress,
        between_batches: Callable[[], None] = lambda: None,
    ):
        self._broker = broker
        self._router = router
        self._appliers = appliers
        self._settings = settings
        self._retry = retry
        self._dead_letter_queue = dead_letter_queue
        self._stats = stats
        self._ledger = ledger
        self._progress = progress
        self._between_batches = between_batches
        self._ready = False
        self._status_at = 0.0
        self._reconnect_backoff = Backoff(retry)
        self._version = 0  # of the router: a batch decoded by an older one is decoded again

    def run(self, stopping: threading.Event) -> None:
        """Apply until ``stopping`` is set; the batch in hand is finished first."""
        policy = RetryPolicy(
            self._retry, stopping, waiting=self._waiting, retried=self._stats.retried
        )
        # The next batch is taken and decoded while this one's SQL runs (the driver lets go of
        # the GIL while it waits for the database): decoding is most of the loop's own work.
        with ThreadPoolExecutor(1, thread_name_prefix="decode-ahead") as ahead:
            upcoming: Future[_Batch] | None = None
            while not stopping.is_set():
                if not self._broker.connected and not self._reconnect(stopping):
                    continue
                self._progress.alive()
                self._report_status()
                self._between_batches()
                batch = self._current(upcoming.result() if upcoming else self._take_decoded())
                upcoming = None
                if not batch:
                    self._stats.maybe_report()
                    continue
                upcoming = ahead.submit(self._take_decoded)
                try:
                    self.process(batch, policy)
                except Interrupted as exc:
                    log.warning("batch left unacknowledged for redelivery: %s", exc)
                self._stats.maybe_report()

    def swap(self, router: Router, appliers: dict[str, Applier], settings: ApplyConfig) -> None:
        """Take new mappings and targets (a reload); call only between batches."""
        self._router, self._appliers, self._settings = router, appliers, settings
        self._version += 1

    def _reconnect(self, stopping: threading.Event) -> bool:
        """Connect (hosts in order) and resubscribe; on failure wait, with capped backoff."""
        try:
            self._broker.connect()
        except BrokerUnavailable as exc:
            wait_s = self._reconnect_backoff.next_s()
            self._say_unavailable(exc, wait_s)
            self._waiting(f"waiting for the broker: {exc}")
            stopping.wait(wait_s)
            return False
        failures = self._reconnect_backoff.failures
        if self._reconnect_backoff.reset():
            log.info("connected to the broker again after %d failed attempts", failures)
        if not self._ready:  # connected and subscribed: ready to apply
            self._ready = True
            self._progress.ready(self._status_line())
        return True

    def _say_unavailable(self, error: BrokerUnavailable, wait_s: float) -> None:
        """Log why the broker cannot be had: a new reason at once, the same one each minute."""
        attempts = self._reconnect_backoff.failures
        if not self._reconnect_backoff.worth_saying(str(error)):
            log.debug("broker unavailable, retrying in %.1f s: %s", wait_s, error)
            return
        # A refusal needs a person (a password, a certificate, a right): an error, not a blip.
        level = logging.ERROR if isinstance(error, BrokerRefused) else logging.WARNING
        log.log(
            level,
            "broker unavailable (%d failed attempts), retrying in %.1f s: %s",
            attempts,
            wait_s,
            error,
        )

    def _waiting(self, status: str) -> None:
        """Waiting out an outage is not being wedged: keep the watchdog fed, say what for."""
        self._progress.waiting(status)

    def _report_status(self) -> None:
        if time.monotonic() - self._status_at >= 2.0:
            self._status_at = time.monotonic()
            self._progress.status(self._status_line())

    def _status_line(self) -> str:
        lag = self._stats.lag_s()
        return (
            f"applying: {self._router.mapping_count} mappings, {self._stats.rate():.0f} ev/s, "
            + (f"lag {lag:.1f} s" if lag is not None else "nothing applied yet")
        )

    def _take_decoded(self) -> _Batch:
        version = self._version
        return _Batch(self._take_batch(self._decoded), version)

    def _decoded(self, message: Message) -> _Pending:
        """A taken message, decoded and routed ahead — unless the daemon may have died on it.

        A redelivered message may be one that killed the daemon, also while decoding: it is
        decoded only after the ledger has counted its start (``_process_counted``).
        """
        item = _Pending(message)
        if not message.redelivered and not decoded_later(message):
            self._decode(item)
        return item

    def _decode(self, item: _Pending) -> None:
        item.changes = self._decode_and_route(item)
        item.decoded = True

    def _current(self, batch: _Batch) -> list[_Pending]:
        """The batch's messages of the current connection, decoded by the current router.

        Messages that came over an older connection are dropped (the broker redelivers them,
        and an ack over a newer connection would mean nothing). A reload since decoding means
        decoding again — and the messages of a queue it unsubscribed are dropped too: the
        unsubscribe handed them back to the broker, for whoever consumes that queue now.
        """
        generation = self._broker.generation
        items = [item for item in batch.items if item.message.generation == generation]
        if batch.version != self._version:
            items = [item for item in items if self._broker.subscribed(item.message.destination)]
            for item in items:
                if item.decoded:
                    item.failures.clear()
                    self._decode(item)
        return items

    def _take_batch(self, each: Callable[[Message], _Pending]) -> list[_Pending]:
        """Messages as they come, each through ``each`` (decoding) while the next arrives."""
        first = self._broker.receive(0.5)
        if first is None:
            return []
        batch = [each(first)]
        # A batch closes between source transactions only: while one lacks parts, wait for them.
        framing = Framing()
        framing.add(batch[0])
        deadline = time.monotonic() + self._settings.batch_linger_ms / 1000
        while len(batch) < self._settings.batch_max_messages or framing.open:
            # A pause in the stream ends the batch: under a backlog messages come back to back,
            # and a pause means the broker has no more for now (ActiveMQ pages in only so many
            # unacknowledged messages) — waiting out the whole linger would only add latency.
            left = deadline - time.monotonic()
            message = self._broker.receive(framing.wait_s(min(max(0.0, left), PAUSE_S)))
            if message is None:
                break
            batch.append(each(message))
            framing.add(batch[-1])
        return batch

    def process(self, batch: list[_Pending], policy: RetryPolicy) -> None:
        """Apply a batch, in arrival order, and settle each of its messages exactly once.

        A redelivered message that was being processed when the daemon last died is a suspect:
        it is processed alone (so that a death is pinned on it, not on its neighbours) or, past
        ``apply.max_deliveries``, dead-lettered unprocessed.
        """
        redelivered = [item.message.message_id for item in batch if item.message.redelivered]
        suspects = self._ledger.starts(redelivered) if redelivered else {}
        part: list[_Pending] = []
        # A unit is a message, or every part of one source transaction: never split.
        for unit in frame(batch):
            items = cast(list[_Pending], unit.items)
            starts = [
                suspects[i.message.message_id] for i in items if i.message.message_id in suspects
            ]
            if not starts and not self._streams(unit):
                part += items
                continue
            if part:
                self._process_counted(part, policy)
                part = []
            # Its first delivery went unrecorded and unacknowledged, then each recorded start.
            deaths = max(starts, default=-1) + 1  # a large transaction goes alone, too
            if deaths >= self._settings.max_deliveries:
                self._dead_letter_crash_loop(items, deaths)
            else:
                self._process_counted(items, policy)
        if part:
            self._process_counted(part, policy)

    def _process_counted(self, part: list[_Pending], policy: RetryPolicy) -> None:
        """Process ``part``, with its redelivered messages counted in the ledger meanwhile."""
        counted = [item.message.message_id for item in part if item.message.redelivered]
        if counted:
            self._ledger.begin(counted)
        try:
            for item in part:
                if not item.decoded and not self._streams(item.unit):
                    self._decode(item)
            self._apply_and_settle(part, policy)
        except Interrupted:
            self._ledger.end(counted)
            raise
        # Not in a `finally`: an exception that kills the daemon must leave its count behind.
        if counted:
            self._ledger.end(counted)

    def _dead_letter_crash_loop(self, items: list[_Pending], deaths: int) -> None:
        what = "this message" if len(items) == 1 else f"this transaction ({len(items)} messages)"
        reason = Reason(
            ErrorClass.CRASH_LOOP,
            f"the daemon died {deaths} times while processing {what} "
            f"(apply.max_deliveries is {self._settings.max_deliveries}); "
            "dead-lettered unprocessed",
            attempts=deaths,
        )
        items = [_Pending(item.message, failures={WHOLE_MESSAGE: reason}) for item in items]
        # Forgotten only once their dead letters landed: a settle lost with the connection
        # redelivers the messages, and their deaths must still count then, or they are
        # processed (and kill the daemon) again.
        if self._settle(items):
            self._ledger.end([item.message.message_id for item in items])

    def _apply_and_settle(self, pending: list[_Pending], policy: RetryPolicy) -> None:
        started = time.perf_counter()
        units = list({id(item.unit): item.unit for item in pending if item.unit}.values())
        set_aside(units)  # broken, superseded, or holding an event that cannot be applied
        self._stats.transactions_in_hand(
            [unit_events(u) for u in units if u.kind is UnitKind.WHOLE]
        )
        if len(units) == 1 and self._streams(units[0]):
            self._apply_streamed(units[0], pending, policy)
            self._stats.batch_done(time.perf_counter() - started)
            return
        # Each change with where it came from: an outcome is pinned on its message's event.
        by_database: dict[str, list[tuple[_Pending, int, Change]]] = defaultdict(list)
        for item in pending:
            if item.skipped:  # counted here, once per settled message, not per decoding
                self._stats.skipped_messages(item.skipped)
            for index, change in item.changes:
                by_database[change.mapping.target_database].append((item, index, change))
        # Counted per batch: a counter and a metric per event would cost more than the event.
        counts: Counter[tuple[str, Verdict]] = Counter()
        newest: dict[str, int] = {}
        for database, arrived in by_database.items():
            # Databases in order: a transaction one of them rejected goes to none after it.
            entries, sizes = groups(arrived)
            changes = [change for _, _, change in entries]
            if any(size > 1 for size in sizes):
                results = apply_grouped(self._appliers[database], changes, sizes, policy)
            else:
                results = apply_isolating(self._appliers[database], changes, policy)
            for (item, index, change), result in zip(entries, results, strict=True):
                if isinstance(result, Unapplied):
                    item.failures.setdefault(index, _reason(result))
                    continue
                name = change.mapping.name
                counts[name, result] += 1
                ts = change.event.source_ts_ms
                if result is Verdict.APPLIED and ts is not None and ts > newest.get(name, 0):
                    newest[name] = ts
            for unit in units:
                reject_failed(unit)
        self._stats.count_batch(counts, newest)
        self._stats.count_transactions(applied_events(units))
        self._settle(pending)
        self._stats.batch_done(time.perf_counter() - started)

    def _streams(self, unit: Unit | None) -> bool:
        """Whether ``unit`` is a large transaction, applied part by part (processed alone)."""
        return streamed(unit) and streams_everywhere(self._appliers)

    def _apply_streamed(self, unit: Unit, pending: list[_Pending], policy: RetryPolicy) -> None:
        """A large source transaction, part by part into one target transaction, then settled."""
        outcome = apply_streamed(pending, self._decode, self._appliers, policy)
        if isinstance(outcome, Reason):
            reject_whole(unit, outcome)
        else:
            counts, newest, events = outcome
            self._stats.count_batch(counts, newest)
            self._stats.count_streamed(events)
        self._settle(pending)

    def _decode_and_route(self, item: _Pending) -> list[tuple[int, Change]]:
        message = item.message
        try:
            slots = decode_body(
                message.body,
                message.headers.get("syncd-event-id"),
                self._settings.unavailable_placeholder,
            )
        except DecodeError as exc:
            item.failures[WHOLE_MESSAGE] = Reason(ErrorClass.DECODE, str(exc))
            return []
        except Exception as exc:  # the last line of defence: no body may stop the loop
            log.exception("decoding a message failed unexpectedly")
            item.failures[WHOLE_MESSAGE] = Reason(ErrorClass.DECODE, _unexpected(exc))
            return []
        item.array = len(slots) > 1 or message.body.lstrip()[:1] == b"["
        item.events = [slot.raw for slot in slots]
        changes: list[tuple[int, Change]] = []
        for index, slot in enumerate(slots):
            if isinstance(slot, BadEvent):
                item.failures[index] = Reason(ErrorClass.DECODE, str(slot.error))
                continue
            if isinstance(slot, Skipped):
                item.skipped.append(slot.reason)
                continue
            try:
                changes += [(index, change) for change in self._router.changes_for(slot)]
            except NoMappingError as exc:
                item.failures[index] = Reason(ErrorClass.NO_MAPPING, str(exc))
            except MappingApplyError as exc:
                item.failures[index] = Reason(ErrorClass.MAPPING, str(exc))
            except Exception as exc:  # the last line of defence: no event may stop the loop
                log.exception("routing an event failed unexpectedly")
                item.failures[index] = Reason(ErrorClass.MAPPING, _unexpected(exc))
        return changes

    def _settle(self, pending: list[_Pending]) -> bool:
        """The one place where every message of the batch ends: acknowledged, dead letters sent.

        Acks are cumulative per subscription, so acknowledging the newest message of each
        destination settles the batch; its dead letters go in the same broker transaction.
        False if the connection was lost first: the broker redelivers the batch.
        """
        letters: list[Outgoing] = []
        newest: dict[str, Message] = {}
        for item in pending:
            newest[item.message.destination] = item.message
            for index, reason in sorted(item.failures.items()):
                letters.append(self._dead_letter(item, index, reason))
                self._stats.dead_lettered(reason)
                context = {
                    "class": str(reason.error_class),
                    "mapping": reason.mapping or "-",
                    "key": reason.key or "-",
                    "message": item.message.message_id,
                    "attempts": reason.attempts or 0,
                    "error": reason.text,
                }
                log.warning("dead-lettered", extra={"context": context})
        if not self._broker.settle(list(newest.values()), letters):
            log.warning("connection lost before acknowledging %d messages", len(pending))
            return False
        return True

    def _dead_letter(self, item: _Pending, index: int, reason: Reason) -> Outgoing:
        queue = self._dead_letter_queue
        if index == WHOLE_MESSAGE or not item.array:
            return dead_letter(queue, item.message, reason)
        return dead_letter(queue, item.message, reason, index, item.events[index])


# What the dead-letter queue calls each way applying can give up on a change.
_GAVE_UP = {
    GaveUp.REJECTED: ErrorClass.REJECTED,
    GaveUp.RETRIES_EXHAUSTED: ErrorClass.RETRIES_EXHAUSTED,
}


def _reason(failure: Unapplied) -> Reason:
    """A change that applying gave up on, as its dead letter says it."""
    return Reason(
        _GAVE_UP[failure.why], failure.text, failure.mapping, failure.key, failure.attempts
    )


def _unexpected(exc: Exception) -> str:
    """The reason for a failure that syncd's own checks did not foresee (logged in full)."""
    return f"cannot process the event: {type(exc).__name__}: {printable(str(exc), 300)}"
