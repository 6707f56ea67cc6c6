"""syncd's one backoff: exponential with jitter, capped, and when a failure is worth a line."""

from __future__ import annotations

import pytest

from syncd.backoff import Backoff
from syncd.config import RetryConfig

RETRY = RetryConfig(attempts=5, initial_backoff_ms=100, max_backoff_ms=800, max_elapsed_s=60)


def test_waits_double_from_the_initial_backoff_up_to_the_cap_each_with_jitter() -> None:
    backoff = Backoff(RETRY)

    waits = [backoff.next_s() for _ in range(8)]

    for wait, floor in zip(waits, [0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8], strict=True):
        assert floor <= wait <= floor + 0.1
    assert backoff.failures == 8


def test_jitter_stays_at_the_cap_so_clients_that_failed_together_spread_out() -> None:
    backoff = Backoff(RETRY)
    for _ in range(5):
        backoff.next_s()

    capped = {round(backoff.next_s(), 4) for _ in range(50)}

    assert len(capped) > 10  # not all 0.8 s: many daemons would come back in one instant


def test_reset_starts_again_from_the_initial_backoff() -> None:
    backoff = Backoff(RETRY)
    for _ in range(6):
        backoff.next_s()

    assert backoff.reset() is True
    assert backoff.next_s() <= 0.2
    assert backoff.reset() is True
    assert backoff.reset() is False


def test_the_same_reason_is_worth_saying_again_only_after_the_repeat_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("syncd.backoff.time.monotonic", lambda: now[0])
    backoff = Backoff(RETRY, repeat_log_s=60)

    said = []
    for step in [0, 10, 59, 61, 62]:
        now[0] = 1000.0 + step
        said.append(backoff.worth_saying("refused the login"))

    assert said == [True, False, False, True, False]


def test_a_new_reason_is_said_at_once_and_a_recovery_forgets_the_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("syncd.backoff.time.monotonic", lambda: 5.0)
    backoff = Backoff(RETRY)

    assert backoff.worth_saying("refused the login")
    assert backoff.worth_saying("connection refused")  # changed: said at once
    assert not backoff.worth_saying("connection refused")
    backoff.reset()
    assert backoff.worth_saying("connection refused")  # a new outage after a recovery
