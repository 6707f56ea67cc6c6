"""MariaDB/MySQL specifics: ON DUPLICATE KEY UPDATE, timeouts, KILL QUERY, error numbers.

MySQL has no ``ON CONFLICT … WHERE … RETURNING``, so positions advance in two steps under a
row lock: read the stored positions ``FOR UPDATE`` (no other writer can move them until this
transaction ends), then upsert them — the keys that advance are then known from the read.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.engine import Connection, Engine

from syncd import jsonvalue
from syncd.apply import core
from syncd.apply.classify import Failure, classify_mysql
from syncd.apply.core import PositionAdvancer
from syncd.debezium import ZonedText

__all__ = [
    "bindable",
    "binder",
    "cancel",
    "check_row",
    "classify",
    "engine",
    "insert",
    "position_advancer",
    "position_reader",
    "upserter",
]

_connect_parameters: weakref.WeakKeyDictionary[Any, tuple[list[Any], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def engine(url: str, timeout_s: float) -> Engine:
    timeout_whole_s = max(1, round(timeout_s))
    created = create_engine(
        url,
        connect_args={
            "connect_timeout": timeout_whole_s,
            # The server ends statements at the deadline itself; twice that without a byte from
            # it means it is gone (pymysql has no TCP keepalives): the batch waits as an outage.
            "read_timeout": 2 * timeout_whole_s,
            "write_timeout": 2 * timeout_whole_s,
            # Byte-exact keys and row values whatever the server's default character set.
            "charset": "utf8mb4",
        },
    )

    @event.listens_for(created, "do_connect")
    def _remember_parameters(
        dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        try:
            dbapi_connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
        except (TypeError, ValueError, OSError) as exc:
            # PyMySQL takes the URL's query (ssl_ca=…) as keyword arguments and says what is
            # wrong with them in plain Python errors: a setting it does not know, a CA file it
            # cannot read. They are the URL's fault, so they fail like a refused connection.
            raise pymysql.err.ProgrammingError(_settings_refused(exc)) from exc
        # cancel() opens a second connection exactly like this one (host, socket, TLS, user).
        _connect_parameters[dbapi_connection] = (list(cargs), dict(cparams))
        return dbapi_connection

    @event.listens_for(created, "connect")
    def _timeouts(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # Waiting for another writer's row lock ends at the apply deadline (whole seconds, at
        # least 1); the batch is then retried.
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {timeout_whole_s}")
        # UTC, whatever the server's zone: a zoned timestamp is written as its UTC wall time
        # (bindable), which a TIMESTAMP column then reads as the very instant.
        cursor.execute("SET SESSION time_zone = '+00:00'")
        if "mariadb" in dbapi_connection.get_server_info().lower():
            # MariaDB ends any statement past the deadline; MySQL's max_execution_time covers
            # SELECT only, so there the deadline thread's KILL QUERY does it.
            cursor.execute(f"SET SESSION max_statement_time = {float(timeout_s)}")
        cursor.close()

    return created


def cancel(dbapi_connection: Any) -> None:
    """Kill the statement running on ``dbapi_connection``, from a second connection.

    pymysql cannot cancel on the connection itself. The victim's statement fails with error
    1317 (transient) and its connection stays usable.
    """
    cargs, cparams = _connect_parameters[dbapi_connection]
    killer = pymysql.connect(*cargs, **{**cparams, "connect_timeout": 5})
    try:
        with killer.cursor() as cursor:
            cursor.execute(f"KILL QUERY {int(dbapi_connection.thread_id())}")
    finally:
        killer.close()


def _settings_refused(error: Exception) -> str:
    if isinstance(error, OSError):
        files = "the TLS files in the URL (ssl_ca, ssl_cert, ssl_key) cannot be read"
        return f"{files}: {error.strerror or error}"
    return f"the URL's settings are not PyMySQL's: {error}"


def classify(error: BaseException) -> Failure:
    args = getattr(error, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    connection_error = isinstance(error, pymysql.err.OperationalError | pymysql.err.InterfaceError)
    return classify_mysql(errno, connection_error)


def upsert_statement(
    table: sa.TableClause, key_columns: Sequence[str], update_columns: Sequence[str]
) -> Any:
    stmt = insert(table)
    if not update_columns:
        # Setting the key to itself is a no-op update; INSERT IGNORE would also silence
        # genuine errors (bad values, CHECK) as warnings.
        return stmt.on_duplicate_key_update({key_columns[0]: table.c[key_columns[0]]})
    return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update_columns})


def position_advancer(table: sa.Table) -> PositionAdvancer:
    """Insert a key's position, or move it forward — only where the stored one is older."""
    stmt = insert(table)
    newer = table.c.position < stmt.inserted.position

    def where_newer(column: str) -> Any:
        return sa.func.if_(newer, stmt.inserted[column], table.c[column])

    # MySQL assigns left to right and later expressions see earlier assignments: position
    # must come last, or every other column would compare against the new position.
    upsert = stmt.on_duplicate_key_update(
        [
            ("event_id", where_newer("event_id")),
            ("deleted", where_newer("deleted")),
            ("source_ts_ms", where_newer("source_ts_ms")),
            # An existing row stays incomplete only while its changes keep lacking columns.
            (
                "incomplete",
                sa.func.if_(
                    newer,
                    sa.and_(
                        sa.func.coalesce(table.c.incomplete, sa.false()), stmt.inserted.incomplete
                    ),
                    table.c.incomplete,
                ),
            ),
            ("applied_at", sa.func.if_(newer, sa.func.current_timestamp(), table.c.applied_at)),
            ("position", where_newer("position")),
        ]
    )

    def advance(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        stored = _locked_positions(conn, table, rows)
        conn.execute(upsert, rows)
        # The read above holds the rows' locks until commit, so the conditional upsert moved
        # exactly the keys that were older (or absent) when read.
        return {
            row["row_key"]
            for row in rows
            if (row["mapping"], row["row_key"]) not in stored
            or stored[row["mapping"], row["row_key"]] < row["position"]
        }

    return advance


def _locked_positions(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]]
) -> dict[tuple[str, str], int]:
    p = table.c
    keys = sorted({(row["mapping"], row["row_key"]) for row in rows})
    stored: dict[tuple[str, str], int] = {}
    for start in range(0, len(keys), core.CHUNK):
        query = (
            sa.select(p.mapping, p.row_key, p.position)
            .where(sa.tuple_(p.mapping, p.row_key).in_(keys[start : start + core.CHUNK]))
            .with_for_update()
        )
        stored.update({(r.mapping, r.row_key): r.position for r in conn.execute(query)})
    return stored


def bindable(value: Any) -> Any:
    """As :func:`core.bindable`; a zoned timestamp or time as its UTC wall time.

    MariaDB and MySQL refuse a zone in a DATETIME, TIMESTAMP or TIME value
    ('2024-01-15T10:30:00Z' is error 1292).
    """
    if type(value) is ZonedText:
        return value.utc
    return core.bindable(value)


def binder(column_type: Any) -> core.Binder:
    """PyMySQL writes a Decimal (and an int) as its digits — exact for DECIMAL columns.

    A FLOAT or DOUBLE column gets the nearest float instead: MariaDB reads a long literal
    as a DECIMAL of at most 65 digits first, so -1.7976931348623157e+308 written out in full
    (as PostgreSQL's to_jsonb writes a double) would land as -1e+65.
    """
    if isinstance(column_type, sa.DateTime):
        return _datetime_bind
    if isinstance(column_type, sa.types._Binary):
        return core.bytea_bytes
    if not isinstance(column_type, sa.Float):
        return bindable

    def bind(value: Any) -> Any:
        if isinstance(value, Decimal) or type(value) is int:
            return float(value)
        return bindable(value)

    return bind


def _datetime_bind(value: Any) -> Any:
    """A DATETIME column takes a zoned timestamp's text (PostgreSQL timestamptz as captured,
    ``2024-01-15 10:30:00+00``) as its UTC wall time: MariaDB refuses the zone (error 1292),
    and syncd's sessions there run in UTC. Text that is not ISO 8601 goes as it is (MariaDB
    then says what is wrong with it)."""
    if type(value) is str and ("+" in value[10:] or value.endswith("Z") or "-" in value[19:]):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return value
        if stamp.tzinfo is not None:
            return stamp.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return bindable(value)


# NaN and ±Infinity, which MySQL cannot hold, never get here: check_row dead-letters the
# event first.
upserter = core.upserter_from(upsert_statement, binder)


def check_row(row: dict[str, Any], types: core.ColumnTypes) -> str | None:
    """Why ``row`` cannot be written (a number MySQL cannot hold: NaN, ±Infinity), or None.

    Also the text 'NaN' (as capture sends a numeric NaN) for a numeric column; a text column
    takes it as text.
    """
    for column, value in row.items():
        if jsonvalue.is_non_finite(value):
            return f"column {column}: MariaDB/MySQL cannot hold {jsonvalue.non_finite_text(value)}"
        if jsonvalue.is_non_finite_text(value) and isinstance(
            types.get(column), sa.Numeric | sa.Float
        ):
            return f"column {column} ({types[column]}): MariaDB/MySQL cannot hold {value}"
    return None


position_reader = core.position_reader
