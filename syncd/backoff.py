"""The one backoff every retry in syncd waits by."""

from __future__ import annotations

import tenacity

from syncd.config import RetryConfig


def backoff(retry: RetryConfig) -> tenacity.wait.wait_base:
    """Exponential backoff with jitter: initial, 2×, 4×… capped at ``max_backoff_ms``.

    Each wait adds up to one initial backoff at random, so that many clients that failed
    together (a broker restart) do not all come back in the same instant — also once they
    wait the longest (tenacity's own jittered wait would cap the jitter away there).
    """
    initial_s = retry.initial_backoff_ms / 1000
    exponential = tenacity.wait_exponential(multiplier=initial_s, max=retry.max_backoff_ms / 1000)
    return exponential + tenacity.wait_random(0, initial_s)


class Backoff:
    """:func:`backoff` counted over consecutive failures, for loops that wait by hand."""

    def __init__(self, retry: RetryConfig):
        self._wait = backoff(retry)
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures so far."""
        return self._failures

    def next_s(self) -> float:
        """How long to wait after one more failure."""
        self._failures += 1
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self._failures
        return float(self._wait(state))

    def reset(self) -> bool:
        """Start counting again; whether there were failures to forget."""
        failed, self._failures = self._failures > 0, 0
        return failed
