"""The message group of a change event: ``JMSXGroupID`` = source table + key.

ActiveMQ hands every message of one group to one consumer at a time, in queue order, and gives
the group to another consumer only when that one goes away — so with many daemons on a queue,
one key's events are still applied in order. Every message syncd sends carries it: the
publisher's (``syncd publish``, the ``Publisher`` API), the captures' and snapshots', and a
dead letter's replay (from ``syncd-group``: ActiveMQ never shows ``JMSXGroupID`` to a STOMP
consumer, so syncd sends the same text under that name too).

This module is the one place that spells a group, so that the publisher, the captures and a
replay put one key's events in one group whichever of them sent them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncd.change import key_text
from syncd.errors import MappingApplyError, NoMappingError

if TYPE_CHECKING:
    from syncd.events import ChangeEvent
    from syncd.routing import Router

# A group id travels in a header of every message and stays in the broker's group map for as
# long as its consumer lives (the shipped configuration forgets no group). ActiveMQ refuses a
# STOMP header over 10 KiB; a key this long is rare, and a digest keeps every group id short.
MAX_GROUP_BYTES = 256
DIGEST_MARK = "#sha256:"  # key texts are JSON arrays ("[…]"): no key's text starts so


def group_id(table: str, key_values: Sequence[Any] | None) -> str:
    """``schema.table:[key…]`` (``public.customers:[7]``), the key as the positions table
    writes it; the table alone for an event without a key (one group for the table: such
    events keep their order, as one consumer takes them).

    A group id longer than ``MAX_GROUP_BYTES`` (UTF-8) keeps the table and replaces the key by
    its SHA-256: ``public.docs:#sha256:9f86…``. The table is cut too if it alone is that long.
    """
    if key_values is None:
        text = table
        if len(text.encode()) <= MAX_GROUP_BYTES:
            return text
        return DIGEST_MARK + _digest(text)
    key = key_text(key_values)
    text = f"{table}:{key}"
    if len(text.encode()) <= MAX_GROUP_BYTES:
        return text
    prefix = table if len(table.encode()) <= MAX_GROUP_BYTES // 2 else ""
    return f"{prefix}:{DIGEST_MARK}{_digest(text)}"


def group_of_event(router: Router, event: ChangeEvent) -> str:
    """The group of a published event: its table + key, the key's columns as the first
    mapping of the table names them; the table alone without a mapping or without the key's
    columns in the row (such an event is dead-lettered; its group only has to exist)."""
    row = event.before if event.is_delete else event.after
    try:
        mapping = router.mappings_for(event)[0]
        key = mapping.key_of(row or {})
    except (NoMappingError, MappingApplyError):
        return group_id(event.qualified_table, None)
    return group_id(event.qualified_table, key)


def _digest(text: str) -> str:
    # surrogatepass: a key text cannot hold a lone surrogate (events are checked when decoded),
    # but a digest must never be the reason a message is not sent.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def group_headers(group: str) -> dict[str, str]:
    """The headers that put a message in ``group``: for the broker, and for consumers."""
    return {"JMSXGroupID": group, "syncd-group": group}
