"""The one backoff: exponential, jittered, capped — also for loops that count their own tries."""

from __future__ import annotations

from syncd.backoff import Backoff
from syncd.config import RetryConfig

RETRY = RetryConfig(attempts=5, initial_backoff_ms=200, max_backoff_ms=2_000, max_elapsed_s=60)


def test_waits_double_with_up_to_one_initial_backoff_of_jitter_up_to_the_cap() -> None:
    waits = Backoff(RETRY)
    seen = [waits.next_s() for _ in range(8)]
    for n, wait in enumerate(seen[:4]):
        assert 0.2 * 2**n <= wait <= 0.2 * 2**n + 0.2
    assert all(wait <= 2.0 for wait in seen)
    assert seen[-1] >= 1.8  # capped, not reset


def test_daemons_failing_together_do_not_come_back_together() -> None:
    # A fleet whose broker restarted: the same attempt number, different waits.
    first = {Backoff(RETRY).next_s() for _ in range(50)}
    assert len(first) > 40


def test_reset_starts_over_and_says_whether_there_were_failures() -> None:
    waits = Backoff(RETRY)
    assert waits.reset() is False
    waits.next_s()
    waits.next_s()
    assert waits.reset() is True
    assert waits.next_s() <= 0.4
