"""Driver and SQLAlchemy errors become syncd's own, at the edge, decided by driver codes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import sqlalchemy as sa

from syncd.apply.classify import Failure
from syncd.errors import (
    PermanentApplyError,
    SyncdError,
    TargetOutage,
    TargetUnavailable,
    first_line,
)

log = logging.getLogger(__name__)


@contextmanager
def translated(database: str, dialect: ModuleType) -> Iterator[None]:
    """``TargetOutage``, ``TargetUnavailable`` or ``PermanentApplyError`` for what is raised
    inside, by ``dialect.classify`` of the driver's error."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        reason = f"database {database}: {first_line(exc.orig or exc)}"
        failure = dialect.classify(exc.orig)
        if exc.connection_invalidated or failure is Failure.OUTAGE:
            raise TargetOutage(reason) from exc
        if failure is Failure.TRANSIENT:
            raise TargetUnavailable(reason) from exc
        raise PermanentApplyError(reason) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise PermanentApplyError(f"database {database}: {first_line(exc)}") from exc
    except SyncdError:
        raise
    except Exception as exc:
        # Not from the server, and not a lost connection (the driver reports those as
        # DBAPI errors): the driver could not encode or adapt a value of this batch — a
        # UnicodeEncodeError, a ValueError, TypeError or OverflowError from its parameter
        # adaptation. Permanent for the events that caused it, which the halving in
        # resilient.py then finds; never an exception that ends the apply loop.
        log.debug("database %s: the driver refused a value", database, exc_info=True)
        reason = f"database {database}: the driver refused a value: {first_line(exc)}"
        raise PermanentApplyError(f"{reason} ({type(exc).__name__})") from exc
