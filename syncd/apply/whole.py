"""Applying changes in groups that commit together or not at all: whole source transactions.

``apply_grouped`` is ``resilient.apply_isolating`` with one more rule: the changes of a group
(one source transaction's changes for this database) are never split. A batch the target
rejects is halved at group boundaries only, until the rejected groups are found; every
change of a rejected group fails with the same reason, which names the change the target
refused — found by trying ever shorter beginnings of the group in transactions that are
rolled back (``SqlApplier.try_batch``), so nothing of a rejected group is ever committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from syncd.apply import Applier
from syncd.apply.plan import Change, Verdict
from syncd.apply.resilient import RetriesExhausted, RetryPolicy, blame
from syncd.deadletter import ErrorClass, Reason
from syncd.errors import PermanentApplyError, TargetUnavailable

log = logging.getLogger(__name__)


@runtime_checkable
class Probing(Protocol):
    def try_batch(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` in one transaction and roll it back; raises as ``apply_batch``."""


def apply_grouped(
    applier: Applier, changes: Sequence[Change], sizes: Sequence[int], policy: RetryPolicy
) -> list[Verdict | Reason]:
    """A verdict per change, or the ``Reason`` its group failed for; groups: ``sizes``, in order."""
    if sum(sizes) != len(changes):
        raise ValueError(f"groups of {sum(sizes)} changes for {len(changes)} changes")
    bounds: list[tuple[int, int]] = []
    start = 0
    for size in sizes:
        if size:
            bounds.append((start, start + size))
        start += size

    def attempt(
        groups: Sequence[tuple[int, int]], policy: RetryPolicy, tries: int
    ) -> list[Verdict | Reason]:
        part = changes[groups[0][0] : groups[-1][1]]
        try:
            return list[Verdict | Reason](policy.call(lambda: applier.apply_batch(part)))
        except PermanentApplyError as exc:
            tries += 1
            failure = Reason(ErrorClass.REJECTED, str(exc), attempts=tries)
        except RetriesExhausted as exc:
            tries += exc.attempts
            failure = Reason(ErrorClass.RETRIES_EXHAUSTED, str(exc), attempts=tries)
            policy = policy.single_attempt()
        if len(groups) == 1:
            reason = _group_failure(applier, part, failure)
            return [reason] * len(part)
        middle = len(groups) // 2
        return attempt(groups[:middle], policy, tries) + attempt(groups[middle:], policy, tries)

    return attempt(bounds, policy, 0) if bounds else []


def _group_failure(applier: Applier, group: Sequence[Change], failure: Reason) -> Reason:
    """The reason a whole group failed, naming the change at fault where it can be found."""
    if len(group) == 1:
        return blame(group[0], failure)
    if failure.error_class is ErrorClass.REJECTED and isinstance(applier, Probing):
        found = _first_refused(applier, group)
        if found is not None:
            change, error = found
            return blame(change, Reason(failure.error_class, error, attempts=failure.attempts))
    return Reason(failure.error_class, failure.text, attempts=failure.attempts)


def _first_refused(applier: Probing, group: Sequence[Change]) -> tuple[Change, str] | None:
    """The first change whose beginning of ``group`` the target refuses, and its error.

    Binary search over beginnings: ``group[:n]`` fails for the whole group, and a beginning
    that fails stays failing as it grows (the changes before it are the same).
    """
    low, high, error = 1, len(group), ""
    while low < high:
        middle = (low + high) // 2
        try:
            applier.try_batch(group[:middle])
        except PermanentApplyError as exc:
            high, error = middle, str(exc)
            continue
        except TargetUnavailable as exc:
            log.warning("cannot tell which change the target refused: %s", exc)
            return None
        low = middle + 1
    if not error:
        try:
            applier.try_batch(group[:low])
        except PermanentApplyError as exc:
            error = str(exc)
        except TargetUnavailable:
            return None
        else:
            return None  # it passes now: the refusal came from something else
    return group[low - 1], error
