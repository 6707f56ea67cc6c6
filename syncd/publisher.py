"""Publishing change events: the library call for applications, and what `syncd publish` uses.

Each event travels as its own persistent message on ``/queue/syncd.<system>``, with
``JMSXGroupID`` = source table + key so that ActiveMQ hands one key's events to one consumer at
a time, in order. Events go in STOMP transactions of ``publish_batch_events``, each committed
with a receipt: when ``publish`` returns, every event is on the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import tenacity

from syncd import jsonvalue
from syncd.backoff import backoff
from syncd.broker import Outgoing
from syncd.broker.stomp import StompBroker
from syncd.change import key_text
from syncd.config import Config
from syncd.errors import (
    BrokerRefused,
    BrokerUnavailable,
    MappingApplyError,
    NoMappingError,
    PublishError,
)
from syncd.events import ChangeEvent, decode_event
from syncd.mapping import Mapping
from syncd.routing import Router

log = logging.getLogger(__name__)


class Publisher:
    """Publishes change events, confirmed by the broker.

    >>> with Publisher(config, mappings) as publisher:
    ...     publisher.publish([{"op": "c", "after": {...}, "source": {...}}])
    """

    def __init__(self, config: Config, mappings: Sequence[Mapping] = ()):
        self._config = config
        self._router = Router(mappings)
        self._broker = StompBroker(config.broker, client_name="syncd-publish")

    def __enter__(self) -> Publisher:
        return self  # the first send connects, retrying through an outage like every send

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        self._broker.connect()

    def close(self) -> None:
        self._broker.close()

    def message_for(self, event: ChangeEvent, body: bytes | None = None) -> Outgoing:
        """The message that carries ``event``: destination, group and body (``raw`` as JSON)."""
        if body is None:
            body = jsonvalue.dumps(event.raw).encode()
        group = self.group_of(event)
        # ActiveMQ keeps JMSXGroupID to itself (STOMP consumers never see it); syncd-group
        # carries the same value along, so a dead letter can be replayed into its group.
        headers = {"JMSXGroupID": group, "syncd-group": group, "content-type": "application/json"}
        return Outgoing(self._config.queue_for(event.system), body, headers)

    def group_of(self, event: ChangeEvent) -> str:
        """Source table + key, by the first mapping of the table; the table alone without one."""
        row = event.before if event.is_delete else event.after
        try:
            mapping = self._router.mappings_for(event)[0]
            return f"{event.qualified_table}:{key_text(mapping.key_of(row or {}))}"
        except (NoMappingError, MappingApplyError):
            return event.qualified_table

    def publish(self, events: Iterable[dict[str, Any] | ChangeEvent]) -> int:
        """Publish every event; returns how many the broker confirmed (all of them).

        Raises ``PublishError`` (with ``confirmed``) if the broker stays unreachable, or at
        once if it refuses (a login, a certificate, a queue the user may not write: its
        ``__cause__`` is then a ``BrokerRefused``); events after the confirmed ones were not
        published and may be sent again safely.
        """
        messages = (
            self.message_for(e if isinstance(e, ChangeEvent) else decode_event(e)) for e in events
        )
        return self.publish_messages(messages)

    def publish_messages(self, messages: Iterable[Outgoing]) -> int:
        confirmed = 0
        chunk: list[Outgoing] = []
        for message in messages:
            chunk.append(message)
            if len(chunk) >= self._config.broker.publish_batch_events:
                confirmed += self._send(chunk, confirmed)
                chunk = []
        if chunk:
            confirmed += self._send(chunk, confirmed)
        return confirmed

    def _send(self, chunk: list[Outgoing], confirmed: int) -> int:
        retry = self._config.retry
        try:
            for attempt in tenacity.Retrying(
                # A refusal stays a refusal until someone changes the configuration.
                retry=tenacity.retry_if_exception_type(BrokerUnavailable)
                & tenacity.retry_if_not_exception_type(BrokerRefused),
                stop=tenacity.stop_after_delay(retry.max_elapsed_s),
                wait=backoff(retry),
                reraise=True,
            ):
                with attempt:
                    if not self._broker.connected:
                        self._broker.connect()
                    self._broker.send_confirmed(chunk)
        except BrokerRefused as exc:
            raise PublishError(str(exc), confirmed) from exc
        except BrokerUnavailable as exc:
            raise PublishError(
                f"the broker did not confirm {len(chunk)} events within "
                f"{retry.max_elapsed_s:g} s (retry.max_elapsed_s): {exc}",
                confirmed,
            ) from exc
        return len(chunk)
