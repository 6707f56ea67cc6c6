"""Source database errors, translated at the capture's edge: try again later, or stop and fix.

A dropped connection, a deadlock or a lock timeout is ``SourceUnavailable`` (the capture polls
again, and reconnects); anything else is ``CaptureError`` with the source and what was being
done. Decided by driver codes, the same classification the appliers use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL

from syncd.apply import dialect
from syncd.apply.classify import Failure
from syncd.config.reader import display_url
from syncd.errors import (
    CaptureError,
    PermanentApplyError,
    SourceUnavailable,
    SyncdError,
    first_line,
)


def classify(url: URL, error: sa.exc.DBAPIError) -> Failure:
    """The failure class of a driver error on a source of ``url``'s dialect."""
    backend = url.get_backend_name()
    try:
        # A driver error means the driver is installed: its module loads.
        speaks = dialect("mysql" if backend == "mariadb" else backend)
    except PermanentApplyError:
        return Failure.PERMANENT
    cause = error.orig if error.orig is not None else error
    failure: Failure = speaks.classify(cause)
    return failure


def translate(
    url: URL,
    where: str,
    what: str,
    error: sa.exc.DBAPIError,
    hint: Callable[[], str | None] = lambda: None,
) -> SyncdError:
    """``SourceUnavailable`` or ``CaptureError`` for ``error`` while doing ``what`` at ``where``.

    ``hint`` may name the fix for a permanent error (asked only then): it replaces the
    driver's reason in the message.
    """
    reason = first_line(error.orig)
    where = f"{where} ({display_url(url)})"
    if error.connection_invalidated or classify(url, error) is not Failure.PERMANENT:
        return SourceUnavailable(f"{what}, {where}: {reason}")
    return CaptureError(f"{what}, {where}: {hint() or reason}")


@contextmanager
def translated(
    url: URL, where: str, what: str, hint: Callable[[], str | None] = lambda: None
) -> Iterator[None]:
    """Driver errors raised inside become :func:`translate`'s."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        raise translate(url, where, what, error, hint) from error
