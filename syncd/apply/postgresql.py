"""PostgreSQL specifics: INSERT … ON CONFLICT, timeouts, and SQLSTATE-based classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg2
import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from syncd.apply import on_conflict
from syncd.apply.classify import Failure, classify_postgresql

__all__ = ["cancel", "classify", "engine", "insert", "position_advancer", "upsert_statement"]


def engine(url: str, timeout_s: float) -> Engine:
    timeout_ms = max(1, round(timeout_s * 1000))
    return create_engine(
        url,
        # psycopg2 sends an executemany of INSERTs as multi-row VALUES pages
        # ("insertmanyvalues"): one round trip per 1000 rows rather than one per row.
        insertmanyvalues_page_size=1000,
        connect_args={
            # The server ends any statement — a lock wait included — past the apply deadline,
            # so a hung statement cannot wedge the daemon; the batch is then retried.
            "options": f"-c statement_timeout={timeout_ms}",
            # A server that does not answer at all is given up on after the same deadline.
            "connect_timeout": max(1, round(timeout_s)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )


def cancel(dbapi_connection: Any) -> None:
    """Cancel the statement running on ``dbapi_connection`` (from another thread)."""
    dbapi_connection.cancel()


def classify(error: BaseException) -> Failure:
    connection_error = isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
    return classify_postgresql(getattr(error, "pgcode", None), connection_error)


def upsert_statement(
    table: sa.TableClause, key_columns: Sequence[str], update_columns: Sequence[str]
) -> Any:
    return on_conflict.upsert_statement(insert, table, key_columns, update_columns)


def position_advancer(table: sa.Table) -> on_conflict.PositionAdvancer:
    return on_conflict.position_advancer(insert, table)
