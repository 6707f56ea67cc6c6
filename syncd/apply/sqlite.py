"""SQLite specifics: INSERT … ON CONFLICT, WAL mode, timeouts, result-code classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Engine

from syncd.apply import on_conflict
from syncd.apply.classify import Failure, classify_sqlite

__all__ = ["cancel", "classify", "engine", "insert", "position_advancer", "upsert_statement"]


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


def upsert_statement(
    table: sa.TableClause, key_columns: Sequence[str], update_columns: Sequence[str]
) -> Any:
    return on_conflict.upsert_statement(insert, table, key_columns, update_columns)


def position_advancer(table: sa.Table) -> on_conflict.PositionAdvancer:
    return on_conflict.position_advancer(insert, table)
