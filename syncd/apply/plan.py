"""The pure half of applying: the position guard and folding a batch into one action per key.

No database here. ``plan_batch`` takes the changes of one mapping and the positions the target
already holds, and decides for every change whether it applies, repeats a position already
applied (duplicate) or is older than what the row reflects (stale) — and what single write per
key brings the row to the newest applied state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from syncd.change import TABLE_KEY, Change


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this position was applied before (redelivery, replay, duplicate)
    STALE = "stale"  # an older position than the row already reflects


def position_guard(stored: int | None, incoming: int) -> Verdict:
    """Decide whether an event at ``incoming`` may change a row last set at ``stored``."""
    if stored is None or incoming > stored:
        return Verdict.APPLIED
    return Verdict.DUPLICATE if incoming == stored else Verdict.STALE


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
