"""PostgreSQL specifics: INSERT … ON CONFLICT, and SQLSTATE-based error classification."""

from __future__ import annotations

from typing import Any

import psycopg2
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from syncd.apply.classify import Failure, classify_postgresql

__all__ = ["classify", "configure", "engine_options", "insert"]

# psycopg2 sends an executemany of INSERTs as multi-row VALUES pages ("insertmanyvalues"):
# one round trip per 1000 rows rather than one per row.
engine_options: dict[str, Any] = {"insertmanyvalues_page_size": 1000}


def configure(engine: Engine) -> None:
    """Nothing to set per connection yet (statement timeouts arrive with the failure work)."""


def classify(error: BaseException) -> Failure:
    connection_error = isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
    return classify_postgresql(getattr(error, "pgcode", None), connection_error)
