"""Retries and poison isolation around an ``Applier``.

Transient failures are retried with exponential backoff and jitter (tenacity); an outage of the
target is waited out however long it lasts, because no event is to blame for it. A batch the
target rejects is split in halves until the events it rejects are found: those alone fail, the
rest commit. Halves are applied in order, so a key's changes still land oldest first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import tenacity

from syncd.apply import Applier
from syncd.apply.plan import Change, Verdict
from syncd.config import RetryConfig
from syncd.deadletter import ErrorClass, Reason
from syncd.errors import PermanentApplyError, SyncdError, TargetOutage, TargetUnavailable

log = logging.getLogger(__name__)


class Interrupted(SyncdError):
    """Shutdown was asked for while waiting out a failure; the batch is left unacknowledged."""


def retrying(retry: RetryConfig, stopping: threading.Event) -> tenacity.Retrying:
    """The retry policy: outages wait forever (until shutdown), other transients ``attempts``."""

    def stop(state: tenacity.RetryCallState) -> bool:
        if stopping.is_set():
            return True
        error = state.outcome.exception() if state.outcome else None
        return not isinstance(error, TargetOutage) and state.attempt_number >= retry.attempts

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "apply failed, retrying in %.1f s: attempt=%d error=%s",
            state.upcoming_sleep,
            state.attempt_number,
            error,
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TargetUnavailable),
        stop=stop,
        wait=tenacity.wait_exponential_jitter(
            initial=retry.initial_backoff_ms / 1000, max=retry.max_backoff_ms / 1000
        ),
        sleep=stopping.wait,  # type: ignore[arg-type]  # a shutdown cuts a backoff short
        before_sleep=before_sleep,
        reraise=True,
    )


def apply_isolating(
    applier: Applier,
    changes: Sequence[Change],
    policy: tenacity.Retrying,
    stopping: threading.Event,
) -> list[Verdict | Reason]:
    """Apply ``changes``; a verdict for each that committed, a ``Reason`` for each that cannot."""

    def attempt(lo: int, hi: int) -> list[Verdict | Reason]:
        try:
            return list(policy(applier.apply_batch, changes[lo:hi]))
        except PermanentApplyError as exc:
            failure = Reason(ErrorClass.REJECTED, str(exc))
        except TargetUnavailable as exc:
            if stopping.is_set() or isinstance(exc, TargetOutage):
                raise Interrupted(str(exc)) from exc
            failure = Reason(ErrorClass.RETRIES_EXHAUSTED, f"{exc} (gave up after retries)")
        if hi - lo == 1:
            change = changes[lo]
            return [
                Reason(
                    failure.error_class,
                    f"mapping {change.mapping.name} ({change.mapping.target_database}."
                    f"{change.mapping.target_table}) key {change.key}: {failure.text}",
                    change.mapping.name,
                    change.key,
                )
            ]
        middle = (lo + hi) // 2
        return attempt(lo, middle) + attempt(middle, hi)

    return attempt(0, len(changes)) if changes else []
