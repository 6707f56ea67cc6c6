"""Error classification: transient (try again later) or permanent (dead-letter), by driver codes.

Pure functions of the codes drivers report (PostgreSQL SQLSTATE, SQLite result codes) — never of
message text — so each rule can be unit-tested without a database.
"""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    OUTAGE = "outage"  # the database is unreachable: wait for it, however long, blaming no event
    TRANSIENT = "transient"  # this attempt failed (deadlock, lock timeout): retry a few times
    PERMANENT = "permanent"  # the target rejects the change itself: dead-letter it


# SQLSTATE classes and codes after which the same statement may well succeed later.
_PG_OUTAGE_CODES = {"57P01", "57P02", "57P03"}  # admin/crash shutdown, cannot connect now
_PG_TRANSIENT_CLASSES = {
    "40",  # transaction rollback: serialization failure 40001, deadlock 40P01
    "53",  # insufficient resources: disk full, out of memory, too many connections
    "57",  # operator intervention: query canceled (statement timeout), admin shutdown
    "58",  # system error (I/O)
}
_PG_TRANSIENT_CODES = {"55P03", "55006", "25P03"}  # lock not available, object in use, idle timeout


def classify_postgresql(sqlstate: str | None, driver_connection_error: bool) -> Failure:
    """Classify a PostgreSQL error by its SQLSTATE.

    Without a SQLSTATE the server said nothing: either the driver could not reach it
    (``driver_connection_error``: an outage) or the driver itself refused the statement.
    """
    if sqlstate is None:
        return Failure.OUTAGE if driver_connection_error else Failure.PERMANENT
    if sqlstate.startswith("08") or sqlstate in _PG_OUTAGE_CODES:
        return Failure.OUTAGE
    if sqlstate[:2] in _PG_TRANSIENT_CLASSES or sqlstate in _PG_TRANSIENT_CODES:
        return Failure.TRANSIENT
    return Failure.PERMANENT


# SQLite primary result codes (extended code & 0xff) that report contention or I/O, not the data.
_SQLITE_TRANSIENT = {
    5,  # SQLITE_BUSY: another connection holds the lock
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    9,  # SQLITE_INTERRUPT: syncd's own apply deadline interrupted the statement
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    15,  # SQLITE_PROTOCOL
}


def classify_sqlite(result_code: int | None) -> Failure:
    """Classify a SQLite error by its (extended) result code."""
    if result_code is None:
        return Failure.PERMANENT
    if result_code & 0xFF == 14:  # SQLITE_CANTOPEN: the file or its directory is not there
        return Failure.OUTAGE
    return Failure.TRANSIENT if result_code & 0xFF in _SQLITE_TRANSIENT else Failure.PERMANENT
