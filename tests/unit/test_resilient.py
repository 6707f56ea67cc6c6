"""Retry limits, outage waits and poison isolation — the policy alone, on a scripted applier."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from syncd.apply.plan import Verdict
from syncd.apply.resilient import (
    GaveUp,
    Interrupted,
    RetriesExhausted,
    RetryPolicy,
    Unapplied,
    apply_isolating,
)
from syncd.change import Change
from syncd.config import RetryConfig
from syncd.errors import PermanentApplyError, TargetOutage, TargetUnavailable
from syncd.mapping import Mapping, OnDelete

FAST = RetryConfig(attempts=3, initial_backoff_ms=1, max_backoff_ms=2, max_elapsed_s=60)
MAPPING = Mapping("m", "s", "t", "db", "t", ("id",), None, OnDelete("delete"), "f.yaml", 1)


def failing(*errors: Exception) -> Callable[[], str]:
    """A call that raises ``errors`` one by one, then succeeds; counts its calls."""
    remaining = list(errors)
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if remaining:
            raise remaining.pop(0)
        return "done"

    call.calls = calls  # type: ignore[attr-defined]
    return call


def test_transient_failures_are_retried_until_success() -> None:
    call = failing(TargetUnavailable("deadlock"), TargetUnavailable("deadlock"))
    assert RetryPolicy(FAST, threading.Event()).call(call) == "done"
    assert call.calls[0] == 3  # type: ignore[attr-defined]


def test_transient_failures_stop_at_the_attempt_limit() -> None:
    call = failing(*[TargetUnavailable("lock timeout")] * 5)
    with pytest.raises(RetriesExhausted) as raised:
        RetryPolicy(FAST, threading.Event()).call(call)
    assert raised.value.attempts == 3


def test_transient_failures_stop_at_the_time_limit() -> None:
    config = RetryConfig(attempts=1000, initial_backoff_ms=30, max_backoff_ms=30, max_elapsed_s=0.1)
    with pytest.raises(RetriesExhausted) as raised:
        RetryPolicy(config, threading.Event()).call(failing(*[TargetUnavailable("x")] * 100))
    assert 2 <= raised.value.attempts <= 6


def test_an_outage_is_waited_out_beyond_every_limit() -> None:
    call = failing(*[TargetOutage("connection refused")] * 10)
    assert RetryPolicy(FAST, threading.Event()).call(call) == "done"


def test_outage_attempts_do_not_count_against_transient_ones() -> None:
    call = failing(*[TargetOutage("down")] * 6, TargetUnavailable("deadlock"))
    assert RetryPolicy(FAST, threading.Event()).call(call) == "done"


def test_shutdown_interrupts_an_outage_wait() -> None:
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(Interrupted):
        RetryPolicy(FAST, stopping).call(failing(TargetOutage("down")))


def test_permanent_errors_are_not_retried() -> None:
    call = failing(PermanentApplyError("check constraint"))
    with pytest.raises(PermanentApplyError):
        RetryPolicy(FAST, threading.Event()).call(call)
    assert call.calls[0] == 1  # type: ignore[attr-defined]


class ScriptedApplier:
    """Rejects any batch containing a poisoned key, as a database with a constraint would."""

    name = "db"

    def __init__(self, poisoned: set[str], error: Callable[[], Exception]):
        self.poisoned = poisoned
        self.error = error
        self.batches: list[list[str]] = []

    def apply_batch(self, changes: Sequence[Change]) -> list[Verdict]:
        self.batches.append([c.key for c in changes])
        if any(c.key in self.poisoned for c in changes):
            raise self.error()
        return [Verdict.APPLIED] * len(changes)

    def close(self) -> None:
        pass


def changes(count: int) -> list[Change]:
    return [
        Change(MAPPING, f"[{i}]", {"id": i}, i, False, {"id": i}, None)  # type: ignore[arg-type]
        for i in range(count)
    ]


def outcome(results: list[Verdict | Unapplied]) -> list[Any]:
    return [r.why if isinstance(r, Unapplied) else r for r in results]


def test_poison_is_isolated_and_only_it_fails() -> None:
    applier = ScriptedApplier({"[3]", "[6]"}, lambda: PermanentApplyError("rejected"))
    results = apply_isolating(applier, changes(8), RetryPolicy(FAST, threading.Event()))
    expected: list[Any] = [Verdict.APPLIED] * 8
    expected[3] = expected[6] = GaveUp.REJECTED
    assert outcome(results) == expected
    failure = results[3]
    assert isinstance(failure, Unapplied)
    assert failure.mapping == "m" and failure.key == "[3]"
    assert failure.text == "mapping m (db.t) key [3]: rejected (tried 4 times)"
    # Halves were tried in order, so a key's changes still land oldest first.
    flat = [key for batch in applier.batches if len(batch) == 1 for key in batch]
    assert flat == sorted(flat, key=lambda k: int(k[1:-1]))


def test_after_retries_run_out_the_halves_get_one_try_each() -> None:
    applier = ScriptedApplier({"[5]"}, lambda: TargetUnavailable("lock timeout"))
    results = apply_isolating(applier, changes(8), RetryPolicy(FAST, threading.Event()))
    assert outcome(results).count(GaveUp.RETRIES_EXHAUSTED) == 1
    failure = results[5]
    assert isinstance(failure, Unapplied) and failure.attempts is not None
    # 3 tries of the whole batch, then one per half on the way down to the single change.
    assert len(applier.batches) == 3 + 2 * 3
    assert failure.attempts == 3 + 3
    assert failure.text.endswith("lock timeout (tried 6 times)")
