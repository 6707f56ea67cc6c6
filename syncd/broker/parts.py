"""Whole source transactions on the wire: the headers of their parts, and a part's size.

A captured source transaction (``sources.NAME.transactions: atomic``) travels as one or more
parts, each a message whose body is a JSON array of its events, in order; the apply loop
reassembles them (``syncd.pipeline.transactions``), ``syncd dlq replay`` keeps them together.
"""

from __future__ import annotations

TX_ID = "syncd-tx-id"
TX_PART = "syncd-tx-part"
TX_PARTS = "syncd-tx-parts"
# An open transaction's next part is waited for this long before the unit is given up as
# broken. syncd's capture commits all parts of a transaction on the broker at once, so they
# come back to back; a wait this long means a publisher died mid-transaction, or a transaction
# has more parts than the broker hands out unacknowledged (see PART_EVENTS).
REST_WAIT_S = 30.0
# Events per part, at most: a part is one message, and a consumer holds every part of an open
# transaction unacknowledged. ActiveMQ stops dispatching to a consumer that holds more
# unacknowledged messages than the queue's page size (maxPageSize: 200 on a stock broker, 2000
# in activemq/syncd-broker) or its prefetch: 2,000 events a part keep a 100,000-row transaction
# at 50 messages, and the largest transaction a stock broker can carry at ~150 parts (300,000
# events).
PART_EVENTS = 2000
PART_BYTES = 4 * 1024 * 1024  # a part also closes at about this much JSON (wide rows)


def part_headers(tx_id: str, part: int, last: bool) -> dict[str, str]:
    """The ``syncd-tx-*`` headers of part ``part`` (1-based) of ``tx_id``."""
    headers = {TX_ID: tx_id, TX_PART: str(part)}
    if last:
        headers[TX_PARTS] = str(part)
    return headers
