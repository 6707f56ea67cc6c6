import pytest

from syncd.apply.classify import Failure, classify_mysql, classify_postgresql, classify_sqlite


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("23505", Failure.PERMANENT),  # unique violation
        ("23502", Failure.PERMANENT),  # not-null violation
        ("22P02", Failure.PERMANENT),  # invalid text representation
        ("42703", Failure.PERMANENT),  # undefined column
        ("40001", Failure.TRANSIENT),  # serialization failure
        ("40P01", Failure.TRANSIENT),  # deadlock detected
        ("55P03", Failure.TRANSIENT),  # lock not available
        ("57014", Failure.TRANSIENT),  # query canceled (statement timeout)
        ("53300", Failure.TRANSIENT),  # too many connections
        ("08006", Failure.OUTAGE),  # connection failure
        ("57P01", Failure.OUTAGE),  # admin shutdown
        ("57P03", Failure.OUTAGE),  # cannot connect now (starting up)
    ],
)
def test_postgresql_errors_are_classified_by_sqlstate(sqlstate: str, expected: Failure) -> None:
    assert classify_postgresql(sqlstate, driver_connection_error=False) is expected


def test_postgresql_error_without_sqlstate_is_an_outage_only_if_the_connection_failed() -> None:
    assert classify_postgresql(None, driver_connection_error=True) is Failure.OUTAGE
    assert classify_postgresql(None, driver_connection_error=False) is Failure.PERMANENT


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (5, Failure.TRANSIENT),  # SQLITE_BUSY
        (517, Failure.TRANSIENT),  # SQLITE_BUSY_SNAPSHOT (extended)
        (6, Failure.TRANSIENT),  # SQLITE_LOCKED
        (14, Failure.OUTAGE),  # SQLITE_CANTOPEN
        (19, Failure.PERMANENT),  # SQLITE_CONSTRAINT
        (1555, Failure.PERMANENT),  # SQLITE_CONSTRAINT_PRIMARYKEY
        (1, Failure.PERMANENT),  # SQLITE_ERROR (no such column ...)
        (None, Failure.PERMANENT),
    ],
)
def test_sqlite_errors_are_classified_by_result_code(code: int | None, expected: Failure) -> None:
    assert classify_sqlite(code) is expected


@pytest.mark.parametrize(
    ("errno", "expected"),
    [
        (1213, Failure.TRANSIENT),  # deadlock
        (1205, Failure.TRANSIENT),  # lock wait timeout
        (1317, Failure.TRANSIENT),  # query interrupted (KILL QUERY from the apply deadline)
        (1969, Failure.TRANSIENT),  # MariaDB max_statement_time exceeded
        (2002, Failure.OUTAGE),  # cannot connect (socket)
        (2003, Failure.OUTAGE),  # cannot connect (TCP)
        (2006, Failure.OUTAGE),  # server has gone away
        (2013, Failure.OUTAGE),  # lost connection during query
        (1062, Failure.PERMANENT),  # duplicate entry
        (1452, Failure.PERMANENT),  # foreign key constraint fails
        (1406, Failure.PERMANENT),  # data too long
        (1366, Failure.PERMANENT),  # incorrect value for column
        (1264, Failure.PERMANENT),  # out of range
        (4025, Failure.PERMANENT),  # CHECK constraint failed (MariaDB)
        (1054, Failure.PERMANENT),  # unknown column
    ],
)
def test_mysql_errors_are_classified_by_error_number(errno: int, expected: Failure) -> None:
    assert classify_mysql(errno, driver_connection_error=False) is expected


def test_mysql_error_without_a_number_is_an_outage_only_if_the_connection_failed() -> None:
    assert classify_mysql(0, driver_connection_error=True) is Failure.OUTAGE
    assert classify_mysql(None, driver_connection_error=True) is Failure.OUTAGE
    assert classify_mysql(None, driver_connection_error=False) is Failure.PERMANENT
