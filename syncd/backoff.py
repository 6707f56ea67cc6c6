"""The one backoff every retry in syncd waits by."""

from __future__ import annotations

import time

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
    """:func:`backoff` counted over consecutive failures, for loops that wait by hand.

    It also says when a failure is worth a log line: a new reason at once, the same reason
    again only after ``repeat_log_s`` — a refused login that waits for a person would otherwise
    write a line at every try, all night.
    """

    def __init__(self, retry: RetryConfig, repeat_log_s: float = 60.0):
        self._wait = backoff(retry)
        self._failures = 0
        self._repeat_log_s = repeat_log_s
        self._said: tuple[str, float] | None = None  # the last reason worth a line, and when

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

    def worth_saying(self, reason: str) -> bool:
        """Whether this failure's ``reason`` should be logged (else: at debug level only)."""
        now = time.monotonic()
        said = self._said
        if said is not None and said[0] == reason and now - said[1] < self._repeat_log_s:
            return False
        self._said = (reason, now)
        return True

    def reset(self) -> bool:
        """Start counting again; whether there were failures to forget."""
        failed, self._failures, self._said = self._failures > 0, 0, None
        return failed
