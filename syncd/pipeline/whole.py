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
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from syncd.apply import Applier
from syncd.apply.plan import Verdict
from syncd.apply.resilient import (
    GaveUp,
    RetriesExhausted,
    RetryPolicy,
    Unapplied,
    blame,
    try_applying,
)
from syncd.apply.stream import Stream
from syncd.change import Change
from syncd.deadletter.letters import ErrorClass, Reason
from syncd.errors import PermanentApplyError, TargetUnavailable
from syncd.pipeline.transactions import WHOLE_MESSAGE, Pending

log = logging.getLogger(__name__)


@runtime_checkable
class Probing(Protocol):
    def try_batch(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` in one transaction and roll it back; raises as ``apply_batch``."""


def apply_grouped(
    applier: Applier, changes: Sequence[Change], sizes: Sequence[int], policy: RetryPolicy
) -> list[Verdict | Unapplied]:
    """A verdict per change, or why its group failed (``Unapplied``); the groups: ``sizes``."""
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
    ) -> list[Verdict | Unapplied]:
        part = changes[groups[0][0] : groups[-1][1]]
        outcome, policy, tries = try_applying(applier, part, policy, tries)
        if not isinstance(outcome, Unapplied):
            return list[Verdict | Unapplied](outcome)
        if len(groups) == 1:
            reason = _group_failure(applier, part, outcome)
            return [reason] * len(part)
        middle = len(groups) // 2
        return attempt(groups[:middle], policy, tries) + attempt(groups[middle:], policy, tries)

    return attempt(bounds, policy, 0) if bounds else []


def _group_failure(applier: Applier, group: Sequence[Change], failure: Unapplied) -> Unapplied:
    """The reason a whole group failed, naming the change at fault where it can be found."""
    if len(group) == 1:
        return blame(group[0], failure)
    if failure.why is GaveUp.REJECTED and isinstance(applier, Probing):
        found = _first_refused(applier, group)
        if found is not None:
            change, error = found
            return blame(change, Unapplied(failure.why, error, attempts=failure.attempts))
    return Unapplied(failure.why, failure.text, attempts=failure.attempts)


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


# -- large transactions, part by part -------------------------------------------------------


@runtime_checkable
class StreamingApplier(Protocol):
    def begin_stream(self) -> Stream: ...


class _Refused(Exception):
    def __init__(self, reason: Reason):
        self.reason = reason


P = TypeVar("P", bound=Pending)
# Verdicts per mapping, the newest source time applied per mapping, and the events applied.
Counts = tuple[Counter[tuple[str, Verdict]], dict[str, int], int]


def apply_streamed(
    items: Sequence[P],
    decode: Callable[[P], None],
    appliers: Mapping[str, Applier],
    policy: RetryPolicy,
) -> Counts | Reason:
    """One large source transaction (``items``: its parts, in order), part by part, in one
    target transaction per database; the verdicts counted, or the ``Reason`` it failed for.
    A part the target refuses is tried alone, in ever shorter beginnings rolled back, to name
    the change at fault (found when the refusal does not depend on the parts before it).

    Each part is decoded (``decode``), applied and let go before the next is decoded, so memory
    holds one part's changes; a retry decodes again from the bodies. The databases commit in
    the order they were first written, once every part is in: nothing is committed before.
    """
    at = [0]  # the part in hand, for the reason
    applying: list[tuple[str, list[Change]]] = []  # the database and changes in hand

    def attempt() -> Counts:
        counts: Counter[tuple[str, Verdict]] = Counter()
        newest: dict[str, int] = {}
        events = 0
        streams: dict[str, Stream] = {}
        try:
            for at[0], item in enumerate(items, start=1):
                item.failures, item.skipped = {}, []
                decode(item)
                _refuse_if_failed(item, at[0])
                by_database: dict[str, list[Change]] = defaultdict(list)
                for _, change in item.changes:
                    by_database[change.mapping.target_database].append(change)
                for database, changes in by_database.items():
                    if database not in streams:
                        applier = appliers[database]
                        assert isinstance(applier, StreamingApplier)
                        streams[database] = applier.begin_stream()
                    applying[:] = [(database, changes)]
                    _count(changes, streams[database].apply(changes), counts, newest)
                item.changes = []
                events += len(item.events)
                if not item.failures:
                    item.events = []  # kept only for the dead letters of unmapped events
            for stream in streams.values():
                stream.commit()
            return counts, newest, events
        finally:
            for stream in streams.values():
                stream.close()

    try:
        return policy.call(attempt)
    except _Refused as refused:
        return refused.reason
    except PermanentApplyError as exc:
        failure = Unapplied(GaveUp.REJECTED, str(exc), attempts=1)
        if applying:
            database, changes = applying[0]
            failure = _group_failure(appliers[database], changes, failure)
        return Reason(
            ErrorClass.REJECTED, f"part {at[0]}: {failure.text}", failure.mapping, failure.key, 1
        )
    except RetriesExhausted as exc:
        return Reason(ErrorClass.RETRIES_EXHAUSTED, f"part {at[0]}: {exc}", attempts=exc.attempts)


def streams_everywhere(appliers: Mapping[str, Applier]) -> bool:
    return all(isinstance(applier, StreamingApplier) for applier in appliers.values())


def _refuse_if_failed(item: Pending, part: int) -> None:
    for index, reason in sorted(item.failures.items()):
        if reason.error_class is not ErrorClass.NO_MAPPING:
            where = "" if index == WHOLE_MESSAGE else f" event {index}"
            text = f"part {part}{where}: {reason.text}"
            raise _Refused(Reason(reason.error_class, text, reason.mapping, reason.key))


def _count(
    changes: Sequence[Change],
    verdicts: Sequence[Verdict],
    counts: Counter[tuple[str, Verdict]],
    newest: dict[str, int],
) -> None:
    for change, verdict in zip(changes, verdicts, strict=True):
        name = change.mapping.name
        counts[name, verdict] += 1
        ts = change.event.source_ts_ms
        if verdict is Verdict.APPLIED and ts is not None and ts > newest.get(name, 0):
            newest[name] = ts
