"""The one backoff every retry in syncd waits by."""

from __future__ import annotations

import tenacity

from syncd.config import RetryConfig


def backoff(retry: RetryConfig) -> tenacity.wait.wait_base:
    """Exponential backoff with jitter: initial, 2×, 4×… capped at ``max_backoff_ms``.

    Each wait adds up to one initial backoff at random, so that many clients that failed
    together (a broker restart) do not all come back in the same instant.
    """
    initial_s = retry.initial_backoff_ms / 1000
    return tenacity.wait_exponential_jitter(
        multiplier=initial_s, jitter=initial_s, max=retry.max_backoff_ms / 1000
    )


class Backoff:
    """The waits of :func:`backoff`, one after another, for a loop of its own.

    Reconnecting to the broker, waiting for a target at start-up and a capture's failed
    rounds are loops, not calls that tenacity could wrap; they wait by the same backoff —
    jitter included, since every daemon of a fleet reconnects when their broker restarts.
    """

    def __init__(self, retry: RetryConfig):
        self._wait = backoff(retry)
        self._attempt = 0

    def next_s(self) -> float:
        """How long to wait after one more failure in a row."""
        self._attempt += 1
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self._attempt
        return float(self._wait(state))

    def reset(self) -> bool:
        """It worked: the next failure waits the initial backoff again. Were there failures?"""
        failed, self._attempt = self._attempt > 0, 0
        return failed
