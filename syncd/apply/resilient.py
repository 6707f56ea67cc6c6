"""Retries and poison isolation around an ``Applier``.

Transient failures (deadlock, serialization, lock or statement timeout) are retried with
exponential backoff and jitter (tenacity), at most ``retry.attempts`` times and for at most
``retry.max_elapsed_s``. An outage of the target is different: no event is to blame for it, so
it is waited out however long it lasts (until shutdown), and counts against no limit.

A batch that fails for good is split in halves until the events at fault are found: those alone
fail, the rest commit. Halves are applied in order, so a key's changes still land oldest first.
After a batch ran out of retries, its halves get one try each (plus outage waits): the retries
were spent on the whole, and a lock held on one row must not cost every half the full budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import tenacity

from syncd.apply import Applier
from syncd.apply.plan import Verdict
from syncd.backoff import backoff
from syncd.change import Change
from syncd.config import RetryConfig
from syncd.errors import PermanentApplyError, SyncdError, TargetOutage, TargetUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class GaveUp(StrEnum):
    """Why applying gave up on a change."""

    REJECTED = "rejected"  # the target rejected it for good
    RETRIES_EXHAUSTED = "retries-exhausted"  # a transient failure that did not pass in time


@dataclass(frozen=True, slots=True)
class Unapplied:
    """The outcome of a change that cannot be applied: why, and the change it blames."""

    why: GaveUp
    text: str
    mapping: str | None = None
    key: str | None = None
    attempts: int | None = None  # how often applying it was tried


class Interrupted(SyncdError):
    """Shutdown was asked for while waiting out a failure; the batch is left unacknowledged."""


class RetriesExhausted(SyncdError):
    """A transient failure outlasted the retry limits; ``attempts`` tries were made."""

    def __init__(self, error: TargetUnavailable, attempts: int):
        self.attempts = attempts
        super().__init__(str(error))


class RetryPolicy:
    """Runs a call under the retry limits; a shutdown request ends every wait at once."""

    def __init__(
        self,
        retry: RetryConfig,
        stopping: threading.Event,
        attempts: int | None = None,
        waiting: Callable[[str], None] = lambda _status: None,
        retried: Callable[[], None] = lambda: None,
    ):
        """``waiting(status)`` is called about every second of a backoff: waiting is not
        being wedged (it keeps a watchdog fed), and says what is being waited for."""
        self._retry = retry
        self._stopping = stopping
        self._attempts = attempts if attempts is not None else retry.attempts
        self._waiting = waiting
        self._retried = retried
        self._status = ""

    def single_attempt(self) -> RetryPolicy:
        """The same policy with one try for transient failures (outages are still waited out)."""
        return RetryPolicy(self._retry, self._stopping, 1, self._waiting, self._retried)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            self._waiting(self._status)
            self._stopping.wait(min(left, 1.0))  # a shutdown cuts a backoff short

    def call(self, function: Callable[[], T]) -> T:
        """``function()``, retried; raises ``Interrupted``, ``RetriesExhausted`` or its error."""
        transient_failures = 0
        first_failure_at = 0.0

        def give_up(state: tenacity.RetryCallState) -> bool:
            nonlocal transient_failures, first_failure_at
            if self._stopping.is_set():
                return True
            if isinstance(state.outcome.exception() if state.outcome else None, TargetOutage):
                return False  # an outage blames no event: wait, however long
            transient_failures += 1
            first_failure_at = first_failure_at or time.monotonic()
            elapsed_s = time.monotonic() - first_failure_at
            return transient_failures >= self._attempts or elapsed_s >= self._retry.max_elapsed_s

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            kind = "target unavailable" if isinstance(error, TargetOutage) else "apply failed"
            self._status = f"{kind}, retrying: {error}"
            self._retried()
            context = {
                "attempt": state.attempt_number,
                "retry_in_s": round(state.upcoming_sleep, 2),
                "error": str(error),
            }
            log.warning("%s, retrying", kind, extra={"context": context})

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TargetUnavailable),
            stop=give_up,
            wait=backoff(self._retry),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(function)
        except TargetUnavailable as exc:
            if self._stopping.is_set() or isinstance(exc, TargetOutage):
                raise Interrupted(str(exc)) from exc
            raise RetriesExhausted(exc, transient_failures) from exc


def apply_isolating(
    applier: Applier, changes: Sequence[Change], policy: RetryPolicy
) -> list[Verdict | Unapplied]:
    """Apply ``changes``: a verdict for each that committed, ``Unapplied`` for each that
    cannot (the pipeline turns those into dead letters)."""

    def attempt(
        part: Sequence[Change], policy: RetryPolicy, tries: int
    ) -> list[Verdict | Unapplied]:
        """``tries``: how often these changes were already tried as part of a larger batch."""
        outcome, policy, tries = try_applying(applier, part, policy, tries)
        if not isinstance(outcome, Unapplied):
            return list[Verdict | Unapplied](outcome)
        if len(part) == 1:
            return [blame(part[0], outcome)]
        middle = len(part) // 2
        return attempt(part[:middle], policy, tries) + attempt(part[middle:], policy, tries)

    return attempt(changes, policy, 0) if changes else []


def try_applying(
    applier: Applier, part: Sequence[Change], policy: RetryPolicy, tries: int
) -> tuple[list[Verdict] | Unapplied, RetryPolicy, int]:
    """Apply ``part`` under ``policy``: its verdicts, or why it failed; with the policy and the
    count of tries (``tries`` so far) that the halves of a failed part are tried with.

    Once retries ran out, a half gets one attempt: the outage already had its time.
    """
    try:
        return policy.call(lambda: applier.apply_batch(part)), policy, tries
    except PermanentApplyError as exc:
        tries += 1
        return Unapplied(GaveUp.REJECTED, str(exc), attempts=tries), policy, tries
    except RetriesExhausted as exc:
        tries += exc.attempts
        failure = Unapplied(GaveUp.RETRIES_EXHAUSTED, str(exc), attempts=tries)
        return failure, policy.single_attempt(), tries


def blame(change: Change, failure: Unapplied) -> Unapplied:
    """The failure, told about the one change that caused it."""
    mapping = change.mapping
    tries = f" (tried {failure.attempts} times)" if failure.attempts else ""
    return Unapplied(
        failure.why,
        f"mapping {mapping.name} ({mapping.target_database}.{mapping.target_table}) "
        f"key {change.key}: {failure.text}{tries}",
        mapping.name,
        change.key,
        failure.attempts,
    )
