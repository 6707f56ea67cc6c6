"""Error classification: transient (try again later) or permanent (dead-letter), by driver codes.

Pure functions of the codes drivers report (PostgreSQL SQLSTATE, SQLite result codes, MySQL error
numbers) — never of message text — so each rule can be unit-tested without a database.
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


# MySQL/MariaDB error numbers (``error.args[0]``). Server errors are below 2000, client
# (driver) errors 2000–2999.
_MYSQL_OUTAGE = {
    1053,  # ER_SERVER_SHUTDOWN: the server is going down
    1927,  # ER_CONNECTION_KILLED (MariaDB)
    2002,  # CR_CONNECTION_ERROR: cannot connect (socket)
    2003,  # CR_CONN_HOST_ERROR: cannot connect (TCP)
    2006,  # CR_SERVER_GONE_ERROR
    2013,  # CR_SERVER_LOST: lost connection during a query
    2055,  # CR_SERVER_LOST_EXTENDED
}
_MYSQL_TRANSIENT = {
    1205,  # ER_LOCK_WAIT_TIMEOUT: innodb_lock_wait_timeout passed
    1213,  # ER_LOCK_DEADLOCK
    1317,  # ER_QUERY_INTERRUPTED: syncd's apply deadline sent KILL QUERY
    1969,  # ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
    3024,  # ER_QUERY_TIMEOUT (MySQL max_execution_time)
    3572,  # ER_LOCK_NOWAIT
    1040,  # ER_CON_COUNT_ERROR: too many connections
    1021,  # ER_DISK_FULL
    1037,  # ER_OUT_OF_MEMORY
    1038,  # ER_OUT_OF_SORTMEMORY
    1041,  # ER_OUT_OF_RESOURCES
}


def classify_mysql(errno: int | None, driver_connection_error: bool) -> Failure:
    """Classify a MySQL/MariaDB error by its error number.

    Everything else — duplicate key 1062, foreign key 1452, data too long 1406, bad value
    1366, out of range 1264, CHECK 4025 (MariaDB) / 3819 (MySQL), unknown column 1054 — is the
    data or the schema, and permanent. Without a number (pymysql reports 0 for a closed
    connection) it is an outage only if the driver lost the connection.
    """
    if not errno:
        return Failure.OUTAGE if driver_connection_error else Failure.PERMANENT
    if errno in _MYSQL_OUTAGE:
        return Failure.OUTAGE
    return Failure.TRANSIENT if errno in _MYSQL_TRANSIENT else Failure.PERMANENT
