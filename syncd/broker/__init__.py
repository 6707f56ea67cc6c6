"""The broker side of syncd. ``syncd.broker.stomp`` is the only module that imports stomp.py;
everything else sees the plain types below."""

from __future__ import annotations

from dataclasses import dataclass, field

# Headers the broker sets on delivery; they describe one delivery and are not carried along
# when a message is dead-lettered or replayed.
DELIVERY_HEADERS = frozenset(
    {
        "message-id",
        "destination",
        "subscription",
        "ack",
        "redelivered",
        "content-length",
        "expires",
        "timestamp",
        "priority",
        "persistent",
        "receipt",
        "transaction",
    }
)


@dataclass(slots=True)  # not frozen: a frozen init costs ~1 µs more, per message
class Message:
    """One delivered message, as the apply loop sees it."""

    body: bytes
    headers: dict[str, str]
    destination: str
    message_id: str
    ack_id: str
    generation: int  # which connection delivered it: an ack over a newer one is meaningless

    @property
    def redelivered(self) -> bool:
        return self.headers.get("redelivered") == "true"

    def carried_headers(self) -> dict[str, str]:
        """The application's own headers (JMSXGroupID, content-type, syncd-*…)."""
        return {k: v for k, v in self.headers.items() if k not in DELIVERY_HEADERS}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send: a dead letter, a replay, or a published event."""

    destination: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
