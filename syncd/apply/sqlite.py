"""SQLite specifics: INSERT … ON CONFLICT, WAL mode, timeouts, result-code classification."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Engine

from syncd.apply.classify import Failure, classify_sqlite

__all__ = ["cancel", "classify", "engine", "insert"]


def engine(url: str, timeout_s: float) -> Engine:
    created = create_engine(url)
    timeout_ms = max(1, round(timeout_s * 1000))

    @event.listens_for(created, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if created.url.database not in (None, "", ":memory:"):
            # WAL lets readers (reports, tests, `sqlite3` in a shell) look while syncd writes.
            cursor.execute("PRAGMA journal_mode=WAL")
        # Waiting for another writer's lock ends at the apply deadline; the batch is retried.
        cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
        cursor.close()

    return created


def cancel(dbapi_connection: Any) -> None:
    """Interrupt the statement running on ``dbapi_connection`` (from another thread)."""
    dbapi_connection.interrupt()


def classify(error: BaseException) -> Failure:
    return classify_sqlite(getattr(error, "sqlite_errorcode", None))
