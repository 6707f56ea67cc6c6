"""SQLite specifics: INSERT … ON CONFLICT, WAL mode, and result-code error classification."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Engine

from syncd.apply.classify import Failure, classify_sqlite

__all__ = ["classify", "configure", "engine_options", "insert"]

engine_options: dict[str, Any] = {}


def configure(engine: Engine) -> None:
    """WAL lets readers (reports, tests, `sqlite3` in a shell) look while the daemon writes."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


def classify(error: BaseException) -> Failure:
    return classify_sqlite(getattr(error, "sqlite_errorcode", None))
