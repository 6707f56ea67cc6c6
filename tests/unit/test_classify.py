import pytest

from syncd.apply.classify import Failure, classify_postgresql, classify_sqlite


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
