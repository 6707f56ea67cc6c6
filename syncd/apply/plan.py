"""The pure half of applying: the position guard and folding a batch into one action per key.

No database here. ``plan_batch`` takes the changes of one mapping and the positions the target
already holds, and decides for every change whether it applies, repeats a position already
applied (duplicate) or is older than what the row reflects (stale) — and what single write per
key brings the row to the newest applied state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from syncd import jsonvalue
from syncd.events import ChangeEvent
from syncd.mapping import Mapping

if TYPE_CHECKING:
    from syncd.apply.evolve import NewColumn

_encode_string = json.encoder.encode_basestring  # as json.dumps(ensure_ascii=False) quotes

# The positions row of a mapping's table as a whole: the position of its last truncate. Key
# texts are JSON arrays, so "*" names no row. Every key's effective position is at least this.
TABLE_KEY = "*"


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this position was applied before (redelivery, replay, duplicate)
    STALE = "stale"  # an older position than the row already reflects


def position_guard(stored: int | None, incoming: int) -> Verdict:
    """Decide whether an event at ``incoming`` may change a row last set at ``stored``."""
    if stored is None or incoming > stored:
        return Verdict.APPLIED
    return Verdict.DUPLICATE if incoming == stored else Verdict.STALE


def key_text(values: Sequence[Any]) -> str:
    """The canonical text of a key, as stored in the positions table: compact JSON.

    A number with a fraction (a Decimal) is written as the shortest float text that is exactly
    its value, as syncd wrote it when it read such numbers as floats — ``1.5`` and ``1.50``
    both as ``1.5``, the same row of a numeric key — and with all its digits (trailing zeros
    dropped) only where no float is exactly it. So the positions of keys stored before stay
    found, and keys that a float would have merged stay apart.
    """
    if len(values) == 1:
        # The common single-column key, without the encoder's set-up (5 µs of the ~25 µs an
        # event costs to route); the very text json.dumps gives.
        value = values[0]
        if type(value) is int:
            return f"[{value}]"
        if type(value) is str:
            return f"[{_encode_string(value)}]"
    return jsonvalue.dumps([_key_number(v) if isinstance(v, Decimal) else v for v in values])


def _key_number(value: Decimal) -> Decimal | float:
    as_float = float(value)
    if not value.is_finite() or Decimal(repr(as_float)) == value:
        return as_float
    # normalize() rounds to the context's precision: give it every digit the value has.
    return value.normalize(Context(prec=len(value.as_tuple().digits)))


@dataclass(slots=True)  # not frozen: a frozen init costs ~1 µs more, per change
class Change:
    """One event as one mapping sees it: a keyed upsert or delete at a source position."""

    mapping: Mapping
    key: str  # key_text of the source key values
    target_key: dict[str, Any]  # target key column -> value
    position: int
    delete: bool
    row: dict[str, Any] | None  # the target row for upserts (may be partial)
    event: ChangeEvent
    ref: Any = None  # opaque: lets the caller find the message this change came from
    # Target columns ``row`` lacks because the source could not send them (TOAST).
    unavailable: tuple[str, ...] = ()
    # For the upsert half of a key change: the delete of the old key, whose row holds what
    # ``unavailable`` lacks.
    moved_from: Change | None = None
    # Columns ``row`` carries that the target table lacked when the change was routed
    # (on_new_column: add): the applier adds them first (syncd.apply.evolve).
    new_columns: dict[str, NewColumn] | None = None

    @property
    def incomplete(self) -> bool:
        return bool(self.unavailable)

    @property
    def truncates(self) -> bool:
        """The whole table was emptied at this position (``key`` is TABLE_KEY)."""
        return self.key == TABLE_KEY


@dataclass(slots=True)
class KeyAction:
    """The one write a batch makes to one key.

    ``row`` merges the upserts since the batch's last delete of the key — kept even when a
    delete follows, because a soft-deleting or delete-ignoring mapping still keeps the row.
    """

    key: str
    target_key: dict[str, Any]
    position: int
    delete: bool = False  # the key's newest change is a delete
    replace: bool = False  # a delete came before the upserts in ``row``: the old row goes first
    row: dict[str, Any] = field(default_factory=dict)
    last: Change | None = None
    # Every change folded in lacked columns the source could not send: if this write creates
    # the row, the row is incomplete until the key's snapshot event fills those columns in.
    incomplete: bool = False


def plan_batch(
    changes: Sequence[Change], stored: dict[str, int]
) -> tuple[dict[str, KeyAction], list[Verdict]]:
    """Fold one mapping's changes into one action per key; a verdict per change, in input order.

    Changes are taken in arrival order, exactly as if each were its own batch — so a change
    older than one before it in the batch is stale, as it would be a batch later. Upserts of a
    key merge (a later partial row keeps earlier columns); an upsert after a delete starts the
    row afresh.
    """
    verdicts: list[Verdict] = []
    actions: dict[str, KeyAction] = {}
    current: dict[str, int] = {}
    truncated = stored.get(TABLE_KEY)
    for change in changes:
        known = current.get(change.key, stored.get(change.key))
        if truncated is not None and (known is None or known < truncated):
            known = truncated  # the row went with the table; older changes stay out
        verdict = position_guard(known, change.position)
        verdicts.append(verdict)
        if verdict is not Verdict.APPLIED:
            continue
        current[change.key] = change.position
        action = actions.get(change.key)
        if action is None:
            action = actions[change.key] = KeyAction(change.key, change.target_key, 0)
            action.incomplete = change.incomplete
        action.incomplete = action.incomplete and change.incomplete
        if change.delete:
            action.delete = True
        else:
            if action.delete:  # created again after a delete in this same batch
                action.row.clear()
                action.delete, action.replace = False, True
            action.row.update(change.row or {})
        action.position = change.position
        action.last = change
    return actions, verdicts
