"""Preparing a PostgreSQL source for logical decoding: ``install`` and ``uninstall``.

``install`` makes a publication of the configured tables and a logical replication slot,
both named ``syncd_<source>``; ``uninstall`` drops them, so the server stops keeping WAL for
the slot. :mod:`syncd.capture.logical` reads the slot (and re-exports both functions).

Driver errors become ``SourceUnavailable`` (try again later) or ``CaptureError`` (a human must
act) here; :func:`first_line` and :func:`is_transient` are shared with the capture.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from syncd.errors import CaptureError, SourceUnavailable, first_line

__all__ = [
    "first_line",
    "install",
    "install_hint",
    "is_transient",
    "parse_table",
    "publication_name",
    "slot_name",
    "uninstall",
]

NAME_PREFIX = "syncd_"
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1
DEFAULT_SCHEMA = "public"
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^a-z0-9_]")
# Tables the replica identity lets pgoutput describe deletes and updates of: with a primary
# key under the default identity ('d'), a chosen unique index ('i'), or every column ('f').
_KEYED_IDENTITIES = frozenset({"i", "f"})

# SQLSTATEs the capture decides by.
UNDEFINED_OBJECT = "42704"  # no such slot or publication
OBJECT_IN_USE = "55006"  # another connection reads the slot
# Connection exceptions, insufficient resources, operator intervention (shutdown,
# pg_terminate_backend), system errors: the same request may succeed later.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})

Table = tuple[str, str]  # (schema, table)


def slot_name(source: str) -> str:
    """The replication slot of ``source``: ``syncd_<source>``, as a safe identifier.

    Slot names allow only lowercase letters, digits and ``_``; anything else becomes ``_``.
    """
    safe = _UNSAFE_NAME_CHARACTERS.sub("_", source.lower())
    return (NAME_PREFIX + safe)[:MAX_IDENTIFIER_LENGTH]


def publication_name(source: str) -> str:
    """The publication of ``source``: the same name as its slot."""
    return slot_name(source)


def parse_table(name: str) -> Table:
    """``schema.table`` or ``table`` (in ``public``) as (schema, table)."""
    schema, _, table = name.rpartition(".")
    return (schema or DEFAULT_SCHEMA, table)


def install_hint(source: str) -> str:
    return f"run `syncd capture install -c CONFIG --source {source}`"


def install(url: URL, source: str, tables: Sequence[str]) -> list[str]:
    """Prepare ``url``'s database for capturing ``tables``; returns what it did, line by line.

    Idempotent: a second run changes nothing, or only the publication's table list.
    The publication is made before the slot because pgoutput looks it up as of each
    change it decodes: a slot older than its publication could not decode its first WAL.
    """
    wanted = sorted({parse_table(table) for table in tables})
    if not wanted:
        raise CaptureError(f"source {source}: no tables to capture; list them in config.yaml")
    with _admin_connection(url) as connection:
        lines = [_check_wal_level(connection)]
        lines += [_check_table(connection, schema, table) for schema, table in wanted]
        lines.append(_ensure_publication(connection, publication_name(source), wanted))
        lines.append(_ensure_slot(connection, slot_name(source)))
    return lines


def uninstall(url: URL, source: str) -> list[str]:
    """Drop ``source``'s slot (so the server stops keeping WAL for it) and publication."""
    with _admin_connection(url) as connection:
        return [
            _drop_slot(connection, slot_name(source)),
            _drop_publication(connection, publication_name(source)),
        ]


@contextmanager
def _admin_connection(url: URL) -> Iterator[Connection]:
    # AUTOCOMMIT: a logical slot cannot be created in a transaction that has written.
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    except sa.exc.DBAPIError as error:
        message = first_line(error.orig)
        if is_transient(error.orig):
            raise SourceUnavailable(f"source database {_where(url)}: {message}") from error
        raise CaptureError(f"source database {_where(url)}: {message}") from error
    finally:
        engine.dispose()


def _check_wal_level(connection: Connection) -> str:
    level = connection.exec_driver_sql("SHOW wal_level").scalar_one()
    if level != "logical":
        raise CaptureError(
            f"wal_level is {level}: set `wal_level = logical` in postgresql.conf and restart "
            "PostgreSQL (logical decoding needs it)"
        )
    return "wal_level is logical"


def _check_table(connection: Connection, schema: str, table: str) -> str:
    found = connection.execute(
        sa.text(
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i"
            "  WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p')"
        ),
        {"schema": schema, "table": table},
    ).first()
    if found is None:
        raise CaptureError(f"table {schema}.{table} does not exist in the source database")
    identity, has_primary_key = found
    if not (identity in _KEYED_IDENTITIES or (identity == "d" and has_primary_key)):
        raise CaptureError(
            f"table {schema}.{table} has no primary key, so its updates and deletes cannot "
            f"be captured: add a primary key, or run "
            f"`ALTER TABLE {schema}.{table} REPLICA IDENTITY FULL`"
        )
    return f"table {schema}.{table} can be captured"


def _ensure_publication(connection: Connection, name: str, wanted: list[Table]) -> str:
    listed = ", ".join(f"{schema}.{table}" for schema, table in wanted)
    all_tables = connection.execute(
        sa.text("SELECT puballtables FROM pg_publication WHERE pubname = :name"), {"name": name}
    ).scalar_one_or_none()
    if all_tables is None:
        quoted, tables = _quote(connection, name), _table_list(connection, wanted)
        connection.exec_driver_sql(f"CREATE PUBLICATION {quoted} FOR TABLE {tables}")
        return f"publication {name} created for {listed}"
    if all_tables:
        raise CaptureError(
            f"publication {name} publishes all tables, not the configured ones: "
            f"drop it (DROP PUBLICATION {name}) and install again"
        )
    if _published_tables(connection, name) == wanted:
        return f"publication {name} already publishes {listed}"
    connection.exec_driver_sql(
        f"ALTER PUBLICATION {_quote(connection, name)} SET TABLE {_table_list(connection, wanted)}"
    )
    return f"publication {name} now publishes {listed}"


def _published_tables(connection: Connection, name: str) -> list[Table]:
    rows = connection.execute(
        sa.text("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = :name"),
        {"name": name},
    )
    return sorted((schema, table) for schema, table in rows)


def _ensure_slot(connection: Connection, name: str) -> str:
    found = connection.execute(
        sa.text(
            "SELECT plugin, database, database = current_database() AS here"
            " FROM pg_replication_slots WHERE slot_name = :name"
        ),
        {"name": name},
    ).first()
    if found is None:
        lsn = connection.execute(
            sa.text("SELECT lsn FROM pg_create_logical_replication_slot(:name, 'pgoutput')"),
            {"name": name},
        ).scalar_one()
        return f"replication slot {name} created at {lsn}: changes from now on are captured"
    plugin, database, here = found
    if plugin != "pgoutput" or not here:
        raise CaptureError(
            f"replication slot {name} exists for database {database} with plugin {plugin}; "
            "syncd needs it on this database with pgoutput: give the source another name, "
            "or drop that slot if nothing uses it"
        )
    return f"replication slot {name} already exists"


def _drop_slot(connection: Connection, name: str) -> str:
    found = connection.execute(
        sa.text("SELECT active_pid FROM pg_replication_slots WHERE slot_name = :name"),
        {"name": name},
    ).first()
    if found is None:
        return f"replication slot {name} does not exist"
    if found.active_pid is not None:
        raise CaptureError(_slot_in_use(name, found.active_pid))
    try:
        connection.execute(sa.text("SELECT pg_drop_replication_slot(:name)"), {"name": name})
    except sa.exc.DBAPIError as error:
        if getattr(error.orig, "pgcode", None) == OBJECT_IN_USE:
            raise CaptureError(_slot_in_use(name, None)) from error
        raise
    return f"replication slot {name} dropped: the server no longer keeps WAL for it"


def _slot_in_use(name: str, pid: int | None) -> str:
    reader = f"process {pid}" if pid is not None else "another process"
    return f"replication slot {name} is in use by {reader}: stop the daemon first"


def _drop_publication(connection: Connection, name: str) -> str:
    exists = connection.execute(
        sa.text("SELECT 1 FROM pg_publication WHERE pubname = :name"), {"name": name}
    ).first()
    if exists is None:
        return f"publication {name} does not exist"
    connection.exec_driver_sql(f"DROP PUBLICATION {_quote(connection, name)}")
    return f"publication {name} dropped"


def _quote(connection: Connection, identifier: str) -> str:
    return connection.dialect.identifier_preparer.quote(identifier)


def _table_list(connection: Connection, tables: list[Table]) -> str:
    return ", ".join(f"{_quote(connection, s)}.{_quote(connection, t)}" for s, t in tables)


def _where(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


# ---------------------------------------------------------------------------------- errors


def is_transient(error: BaseException | None) -> bool:
    code = getattr(error, "pgcode", None)
    if code is None:
        # No SQLSTATE: the connection failed or broke before the server could say why.
        return isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError | OSError)
    return code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code == OBJECT_IN_USE
