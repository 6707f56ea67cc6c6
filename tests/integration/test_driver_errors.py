"""Errors that escape a database driver for one event: that event is rejected, never the loop.

Values that the decoder and router would stop (lone surrogates, NUL) are built here past them,
straight into changes, to prove the applier's own last line of defence on every dialect.
"""

from __future__ import annotations

import threading
from typing import Any

from syncd.apply.plan import Verdict
from syncd.apply.resilient import GaveUp, RetryPolicy, Unapplied, apply_isolating
from syncd.apply.sql import SqlApplier
from syncd.config import RetryConfig
from tests.integration.test_applier import CUSTOMERS, applier, changes, rows

__all__ = ["applier"]  # the fixture, shared with the applier suite

FAST = RetryConfig(attempts=2, initial_backoff_ms=1, max_backoff_ms=2, max_elapsed_s=10)


def _row(key: int, name: Any) -> dict[str, Any]:
    return {"id": key, "name": name, "email": f"U{key}@X", "score": 1}


def test_a_value_the_driver_cannot_encode_rejects_that_event_alone(applier: SqlApplier) -> None:
    batch = changes(
        CUSTOMERS,
        ("c", 1, _row(1, "before")),
        ("c", 2, _row(2, "lone \ud800 surrogate")),
        ("c", 3, _row(3, "after")),
    )
    results = apply_isolating(applier, batch, RetryPolicy(FAST, threading.Event()))
    assert results[0] is Verdict.APPLIED and results[2] is Verdict.APPLIED
    assert isinstance(results[1], Unapplied)
    assert results[1].why is GaveUp.REJECTED
    assert results[1].key == "[2]"
    assert [r[:2] for r in rows(applier, "dim_customer")] == [(1, "before"), (3, "after")]


def test_an_integer_too_large_for_the_driver_rejects_that_event_alone(
    applier: SqlApplier,
) -> None:
    # PostgreSQL and MariaDB reject it as out of range. SQLite's applier binds its digits
    # (sqlite3 would raise OverflowError), which SQLite itself keeps in some form: there the
    # router dead-letters such a value before it reaches the applier (tests/unit/test_values).
    row = {**_row(2, "huge"), "score": 2**70}
    batch = changes(CUSTOMERS, ("c", 1, _row(1, "before")), ("c", 2, row), ("c", 3, _row(3, "x")))
    results = apply_isolating(applier, batch, RetryPolicy(FAST, threading.Event()))
    assert results[0] is Verdict.APPLIED and results[2] is Verdict.APPLIED
    if applier.engine_for_tests.dialect.name == "sqlite":  # type: ignore[attr-defined]
        assert results[1] is Verdict.APPLIED
        return
    assert isinstance(results[1], Unapplied) and results[1].why is GaveUp.REJECTED
