"""The capture runner: one source's changes, from its database onto its queue.

``syncd run`` starts one :class:`CaptureRunner` thread per configured source. Each round it
polls a batch of whole source transactions, publishes its events (STOMP transactions
committed with a receipt), and only then confirms the batch, so that the source may forget
it (the slot's flush LSN moves on, the outbox rows are deleted). Confirm after the broker's
receipt: a crash in between re-sends the batch, and the consumer's positions make that
harmless; confirming first could lose it.

What it does on failure, decided by class:

- ``SourceUnavailable`` (the source is down or the connection dropped): wait with backoff;
  the capture reconnects on its next poll and sends again what was not confirmed.
- ``PublishError`` / ``BrokerUnavailable``: keep the batch in hand and publish it again after
  a backoff — never confirm events the broker has not confirmed.
- ``CaptureError`` (the source is not prepared or refuses: a human must act): logged with the
  source's name and raised, which stops the daemon (exit 2; see ``syncd.commands.cli``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from syncd import jsonvalue
from syncd.backoff import Backoff
from syncd.broker import Outgoing
from syncd.capture import Capture, Captured, CapturedBatch, Streaming
from syncd.capture.logical_atomic import PartStream, part_message, transaction_parts
from syncd.config import Config, SourceConfig
from syncd.errors import (
    BrokerRefused,
    BrokerUnavailable,
    CaptureError,
    PublishError,
    SourceUnavailable,
    first_line,
)
from syncd.groups import group_headers
from syncd.publisher import Publisher
from syncd.telemetry.progress import Progress
from syncd.telemetry.stats import Stats

__all__ = ["CaptureRunner", "check_source", "open_capture", "publish_captured"]

log = logging.getLogger(__name__)

POLL_S = 0.5  # a poll waits this long for changes; the runner checks for a stop between polls
# The runner's publisher gives up on an unreachable broker after this long (instead of
# retry.max_elapsed_s) so that a stop request is noticed within seconds during an outage; the
# runner itself then publishes the batch again after a backoff, for as long as it takes.
PUBLISH_PATIENCE_S = 5.0
STATUS_EVERY_S = 2.0


def open_capture(source: SourceConfig) -> Capture:
    """The capture of ``source``'s mode. Connects on its first poll, not here."""
    if source.capture == "logical" and source.atomic:
        from syncd.capture.logical_atomic import AtomicLogicalCapture

        return AtomicLogicalCapture(
            source.url, source.name, source.tables, max_batch_events=source.batch_events
        )
    if source.capture == "logical":
        from syncd.capture.logical import LogicalCapture

        return LogicalCapture(
            source.url, source.name, source.tables, max_batch_events=source.batch_events
        )
    from syncd.capture.outbox import OutboxCapture

    return OutboxCapture(
        source.url,
        source.name,
        source.tables,
        max_batch_events=source.batch_events,
        atomic=source.atomic,
    )


def captured_message(queue: str, captured: Captured) -> Outgoing:
    """The message that carries one captured event: JSON body, grouped by table and key."""
    body = jsonvalue.dumps(captured.event).encode()
    headers = {**group_headers(captured.group), "content-type": "application/json"}
    return Outgoing(queue, body, headers)


def publish_captured(publisher: Publisher, queue: str, events: Sequence[Captured]) -> int:
    """Publish ``events`` to ``queue`` as persistent messages, in order; returns how many the
    broker confirmed (all of them). Raises ``PublishError`` if the broker stays unreachable.
    """
    return publisher.publish_messages(captured_message(queue, event) for event in events)


def check_source(source: SourceConfig) -> None:
    """Connect to ``source`` once (``syncd check``); ``SourceUnavailable`` if it cannot be.

    Only reachability: whether capture is installed is ``syncd capture install``'s to say.
    """
    url = source.url
    if url.get_backend_name() == "sqlite":
        # Connecting would create a missing file: a source must exist already.
        if url.database and not Path(url.database).is_file():
            raise SourceUnavailable(f"source {source.name}: no SQLite file {url.database}")
        return
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        reason = first_line(exc.orig)
        raise SourceUnavailable(f"source {source.name} ({source.display_url}): {reason}") from exc
    finally:
        engine.dispose()


class CaptureRunner:
    """Carries one source's captured changes to its queue until told to stop.

    Not thread-safe: :meth:`run` is the one thread that polls, publishes and confirms.
    """

    def __init__(
        self,
        source: SourceConfig,
        config: Config,
        stats: Stats,
        progress: Progress,
        capture: Capture | None = None,
    ):
        self.source = source
        self._capture = capture if capture is not None else open_capture(source)
        patient = dataclasses.replace(
            config.retry, max_elapsed_s=min(config.retry.max_elapsed_s, PUBLISH_PATIENCE_S)
        )
        self._publisher = Publisher(dataclasses.replace(config, retry=patient))
        self._stats = stats
        self._progress = progress
        self._backoff = Backoff(config.retry)
        self._pending: CapturedBatch | None = None  # polled, not yet confirmed by the broker
        self._ready = False
        self._status_at = 0.0
        self.broker_connected = False  # as of the last publish (for syncd_broker_connected)

    def run(self, stopping: threading.Event) -> None:
        """Capture and publish until ``stopping`` is set; raises ``CaptureError``."""
        context = {"source": self.source.name, "capture": self.source.capture}
        log.info("capturing to %s", self.source.queue, extra={"context": context})
        try:
            while not stopping.is_set():
                wait_s = self._round()
                if wait_s:
                    stopping.wait(wait_s)
        except CaptureError as exc:
            log.error("capture failed: %s", exc, extra={"context": context})
            raise
        finally:
            # Shutdown order: the round in hand has published and confirmed its batch (or,
            # with the broker down, left it unconfirmed: the source sends it again next
            # time); then the source connection closes, telling it the confirmed position,
            # and the broker connection.
            self._capture.close()
            self._publisher.close()
            log.info("capture stopped", extra={"context": context})

    def _round(self) -> float:
        """Poll, publish, confirm; returns how long to wait before the next round (0: none)."""
        try:
            if not self._ready:
                self._publisher.connect()  # READY means: connected to the broker and source
            batch = self._pending or self._poll()
        except SourceUnavailable as exc:
            return self._outage("the source", exc)
        except BrokerUnavailable as exc:
            return self._outage("the broker", exc)
        if not self._ready:
            self._ready = True
            self._progress.ready(self._status_line())
        if isinstance(batch, PartStream):
            return self._publish_whole(batch)
        if batch is None:
            self._went_round()
            return 0.0
        self._pending = batch
        try:
            if self.source.atomic:  # outbox: whole transactions, read whole
                parts = transaction_parts(self.source.name, batch.events)
                queue, name = self.source.queue, self.source.name
                self._publisher.publish_together(part_message(queue, name, p) for p in parts)
            else:
                publish_captured(self._publisher, self.source.queue, batch.events)
        except (PublishError, BrokerUnavailable) as exc:
            self.broker_connected = False
            return self._outage("the broker", exc)
        self.broker_connected = True
        self._stats.count_captured(self.source.name, len(batch.events))
        self._pending = None  # on the broker: from here a failure only means a re-send
        try:
            self._capture.confirm(batch)
        except SourceUnavailable as exc:
            return self._outage("the source", exc)
        self._went_round()
        return 0.0

    def _poll(self) -> CapturedBatch | PartStream | None:
        if isinstance(self._capture, Streaming):
            return self._capture.poll_parts(POLL_S)
        return self._capture.poll(POLL_S)

    def _publish_whole(self, stream: PartStream) -> float:
        """Send a stream of whole source transactions in one broker transaction, then confirm.

        The broker makes every part visible at once or none: a consumer never sees part of a
        transaction that the capture did not finish sending. A failure drops what was read
        (``rewind``): the next round reads it from the source again.
        """
        parts = iter(stream)
        first = next(parts, None)  # none: transactions of tables not captured, or empty
        if first is not None:
            queue, name = self.source.queue, self.source.name
            messages = (part_message(queue, name, p) for p in itertools.chain([first], parts))
            try:
                self._publisher.publish_together(messages)
            except (PublishError, BrokerUnavailable) as exc:
                self.broker_connected = False
                self._rewind()
                return self._outage("the broker", exc)
            except SourceUnavailable as exc:
                self._rewind()
                return self._outage("the source", exc)
            self.broker_connected = True
            self._stats.count_captured(self.source.name, stream.events)
        if stream.batch.token is not None:
            try:
                self._capture.confirm(stream.batch)
            except SourceUnavailable as exc:
                return self._outage("the source", exc)
        self._went_round()
        return 0.0

    def _rewind(self) -> None:
        """Drop the half-sent broker transaction (with the connection) and what was read."""
        self._publisher.close()
        if isinstance(self._capture, Streaming):
            self._capture.rewind()

    def _went_round(self) -> None:
        recovered = self._backoff.reset()
        self._progress.alive()
        if recovered or time.monotonic() - self._status_at >= STATUS_EVERY_S:
            self._status_at = time.monotonic()
            self._progress.status(self._status_line())
        self._stats.maybe_report_capture(self.source.name)

    def _outage(self, what: str, error: Exception) -> float:
        """Log and show the outage; how long to wait before trying again."""
        wait_s = self._backoff.next_s()
        held = f", {len(self._pending.events)} events held" if self._pending else ""
        context = {"source": self.source.name, "retry_in_s": round(wait_s, 2)}
        # A new reason at once, the same one again each minute (a refused login waits for a
        # person); a refusal is an error, an outage a warning.
        level = logging.ERROR if isinstance(error, BrokerRefused) else logging.WARNING
        if not self._backoff.worth_saying(f"{what}: {error}"):
            level = logging.DEBUG
        log.log(level, "waiting for %s%s: %s", what, held, error, extra={"context": context})
        self._progress.waiting(f"capture {self.source.name}: waiting for {what}: {error}")
        return wait_s

    def _status_line(self) -> str:
        rate = self._stats.capture_rate(self.source.name)
        return f"capturing {self.source.name}: {rate:.0f} ev/s"
