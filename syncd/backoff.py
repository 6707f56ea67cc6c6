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
