"""Dead letters: what goes to the dead-letter queue, and the headers that say why.

The body is the original message body, untouched — or, when one event of an array failed, that
event alone as JSON, so that its neighbours are not dead-lettered (or replayed) with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from syncd import jsonvalue
from syncd.broker import Message, Outgoing


class ErrorClass(StrEnum):
    """Why a message or event was dead-lettered (the ``syncd-error-class`` header)."""

    DECODE = "decode"  # not JSON, or not a change event
    NO_MAPPING = "no-mapping"  # a valid event that no mapping consumes
    MAPPING = "mapping"  # a mapping could not make a target row of it
    REJECTED = "rejected"  # the target database rejected it permanently
    RETRIES_EXHAUSTED = "retries-exhausted"  # a transient failure that did not pass in time
    CRASH_LOOP = "crash-loop"  # the daemon died every time it processed this message
    TRANSACTION = "transaction"  # parts that do not make a whole source transaction


@dataclass(frozen=True, slots=True)
class Reason:
    """Why one event (or a whole undecodable message) cannot be applied."""

    error_class: ErrorClass
    text: str
    mapping: str | None = None
    key: str | None = None
    attempts: int | None = None  # how often applying it was tried


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` as one header line: whitespace folded; NUL, other controls and lone
    surrogates escaped (a header cannot carry them, and a reason may quote the event)."""
    flat = " ".join(text.split())
    if not flat.isprintable():
        flat = _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], flat)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def event_body(event: Any) -> bytes | None:
    """One event as JSON, its text as it came; None if it cannot be written out again.

    Escaped to ASCII where it holds what UTF-8 cannot encode (a lone surrogate): the escape
    is what the publisher sent. None for an event nested too deeply to encode again.
    """
    try:
        return jsonvalue.dumps(event).encode()  # every digit as it came
    except UnicodeEncodeError:
        return jsonvalue.dumps_ascii(event).encode()
    except (RecursionError, ValueError, TypeError):
        return None


def dead_letter(
    queue: str,
    message: Message,
    reason: Reason,
    event_index: int | None = None,
    event: Any = None,
) -> Outgoing:
    """The dead letter for ``message`` — or for its element ``event_index`` alone."""
    headers = message.carried_headers()
    body = message.body
    if event_index is not None:
        # An event that cannot be written out alone goes in its message, the index naming it.
        body = event_body(event) or message.body
        headers["syncd-event-index"] = str(event_index)
        headers.pop("content-length", None)
    headers.update(
        {
            "syncd-error": one_line(reason.text),
            "syncd-error-class": str(reason.error_class),
            "syncd-original-destination": message.destination,
            "syncd-original-message-id": message.message_id,
            "syncd-failed-at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
    )
    if reason.mapping:
        headers["syncd-mapping"] = reason.mapping
    if reason.key:
        headers["syncd-key"] = one_line(reason.key)  # a header: a very long key is cut
    if reason.attempts is not None:
        headers["syncd-attempts"] = str(reason.attempts)
    return Outgoing(queue, body, headers)
