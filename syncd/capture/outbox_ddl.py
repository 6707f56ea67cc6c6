"""The outbox's SQL, per dialect: the table, the capture triggers and the relay's statements.

Pure text: nothing here talks to a database, so every statement can be unit-tested.
``syncd.capture.outbox`` runs them. Identifiers are quoted by the SQLAlchemy dialect's own
preparer and literals by :meth:`OutboxSql.literal`, because table and column names come from
the source database, not from us.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from syncd.errors import CaptureError

OUTBOX = "syncd_outbox"
NOTIFY_CHANNEL = "syncd_outbox"  # PostgreSQL: the relay LISTENs here to wake on new rows
COLUMNS = "id, schema_name, table_name, op, row_key, {before}, {after}, tx_id"
# A source name becomes part of trigger and function names, so it must be a plain identifier.
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ROW_TRIGGER = re.compile(r"syncd_.+_(ins|upd|del)", re.DOTALL)
Table = tuple[str, str]  # (schema, table)
_EVENTS = (("ins", "INSERT", "c"), ("upd", "UPDATE", "u"), ("del", "DELETE", "d"))


def check_source_name(source: str) -> None:
    if not _SOURCE_NAME.fullmatch(source):
        raise CaptureError(
            f"source name {source!r}: use lowercase letters, digits and _, starting with a "
            "letter (it becomes part of the capture triggers' names)"
        )


def advisory_lock_key(source: str) -> int:
    """PostgreSQL's advisory lock key of a source's relay: a stable signed 64-bit number."""
    digest = hashlib.sha256(f"{OUTBOX}:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class SourceTable:
    """A captured table as the source database describes it at install time."""

    schema: str
    name: str
    key: tuple[str, ...]  # primary key columns, in key order
    columns: tuple[str, ...] = ()  # every column, in table order
    binary: frozenset[str] = field(default_factory=frozenset)  # columns holding bytes
    # PostgreSQL columns that travel as their text, as logical capture sends them: json and
    # jsonb (to_jsonb would respace, reorder and dedupe json; a jsonb string document would
    # be taken for its text), and real / double precision's -0 (a jsonb number has none).
    json: frozenset[str] = field(default_factory=frozenset)
    floats: frozenset[str] = field(default_factory=frozenset)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


class OutboxSql:
    """The statements of one dialect. ``default_schema`` is where the outbox lives.

    PostgreSQL: the connection's current schema (``public`` unless search_path says
    otherwise); SQLite: ``main``; MariaDB/MySQL: the URL's database.
    """

    backend: ClassVar[str]
    max_identifier: ClassVar[int]
    sa_dialect: ClassVar[Dialect]
    created_ms: ClassVar[str]  # SQL: created_at as milliseconds since the epoch
    tx_id: ClassVar[str] = "NULL"  # SQL: the changing transaction's id
    # How install and uninstall begin a transaction; empty where DDL commits by itself.
    begin_ddl: ClassVar[str] = "BEGIN"
    # After a refused relay lock: whether a (failed) transaction is left to roll back.
    rollback_after_refusal: ClassVar[bool] = False

    def __init__(self, default_schema: str) -> None:
        self.default_schema = default_schema

    def quote(self, identifier: str) -> str:
        return str(self.sa_dialect.identifier_preparer.quote(identifier))

    def literal(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def table_of(self, text: str) -> tuple[str, str]:
        """``schema.table`` or ``table`` → (schema, table), unqualified in the default schema."""
        schema, _, table = text.rpartition(".")
        return (schema or self.default_schema), table

    def checked_name(self, name: str) -> str:
        if len(name) > self.max_identifier:
            raise CaptureError(
                f"trigger name {name} is longer than {self.backend} allows "
                f"({self.max_identifier} characters): use a shorter source name"
            )
        return name

    # -- the outbox --------------------------------------------------------------------------

    def create_outbox(self) -> list[str]:
        raise NotImplementedError

    def drop_outbox(self) -> list[str]:
        return [f"DROP TABLE IF EXISTS {OUTBOX}"]

    def insert_event(self) -> str:
        """The INSERT of ``write_event``: JSON arrives as text parameters."""
        before, after = self.quote("before"), self.quote("after")
        return (
            f"INSERT INTO {OUTBOX} (source, schema_name, table_name, op, row_key, "
            f"{before}, {after}, tx_id) VALUES (:source, :schema_name, :table_name, :op, "
            f"{self.json_param('row_key')}, {self.json_param('before')}, "
            f"{self.json_param('after')}, {self.tx_id})"
        )

    def json_param(self, name: str) -> str:
        return f":{name}"

    # -- capture triggers --------------------------------------------------------------------

    def trigger_names(self, source: str, table: str) -> list[str]:
        return [f"syncd_{source}_{table}_{suffix}" for suffix, _, _ in _EVENTS]

    def capture_triggers(self, source: str, table: SourceTable) -> list[str]:
        """Drop and create the triggers of ``source`` on ``table``."""
        raise NotImplementedError

    def row_json(self, row: str, table: SourceTable) -> str:
        """The JSON of row ``row`` (``NEW``, ``OLD`` or a query's table alias) as a trigger
        puts it into the outbox: a snapshot reads rows with it to represent them alike."""
        raise NotImplementedError

    def drop_triggers(self, source: str, schema: str, table: str) -> list[str]:
        names = self.trigger_names(source, table)
        return [f"DROP TRIGGER IF EXISTS {self.quote(name)}" for name in names]

    def installed_triggers(self) -> str:
        """A query of what syncd installed: rows that the methods below understand."""
        raise NotImplementedError

    def captured_tables(self, installed: Sequence[Sequence[Any]], source: str) -> set[Table]:
        """(schema, table) of every table with triggers of ``source``."""
        raise NotImplementedError

    def other_sources_installed(self, installed: Sequence[Sequence[Any]], source: str) -> bool:
        raise NotImplementedError

    def check_collisions(
        self, installed: Sequence[Sequence[Any]], source: str, table: SourceTable
    ) -> None:
        """Refuse trigger names that another source's triggers already use."""

    # -- the relay ---------------------------------------------------------------------------

    def select_batch(self) -> str:
        columns = COLUMNS.format(before=self.quote("before"), after=self.quote("after"))
        return (
            f"SELECT {columns}, {self.created_ms} AS created_ms FROM {OUTBOX} "
            "WHERE source = :source ORDER BY id LIMIT :limit"
        )

    def lock(self, source: str, wait_s: float) -> list[str]:
        """Begin the relay's exclusive hold on ``source``'s outbox rows, waiting ``wait_s``."""
        raise NotImplementedError

    def unlock(self, source: str, commit: bool) -> list[str]:
        return ["COMMIT" if commit else "ROLLBACK"]

    def lock_obtained(self, result: Any) -> bool:
        """Given the last lock statement's scalar result (dialects that answer, not raise)."""
        return True

    def lock_refused(self, error: BaseException) -> bool:
        """Whether a driver error from :meth:`lock` means "another relay holds it"."""
        return False


class PostgresOutbox(OutboxSql):
    """One plpgsql function per source; one trigger per table passes it the key columns."""

    backend = "postgresql"
    max_identifier = 63
    sa_dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    created_ms = "(extract(epoch FROM created_at) * 1000)::bigint"
    tx_id = "txid_current()"
    rollback_after_refusal = True  # a lock_timeout aborts the relay's transaction

    def function_name(self, source: str) -> str:
        return f"syncd_{source}_capture"

    def trigger_names(self, source: str, table: str) -> list[str]:
        # Trigger names are per table in PostgreSQL: the function's name is enough.
        return [self.function_name(source)]

    def qualified(self, name: str) -> str:
        return f"{self.quote(self.default_schema)}.{self.quote(name)}"

    def json_param(self, name: str) -> str:
        return f"CAST(:{name} AS jsonb)"

    def create_outbox(self) -> list[str]:
        outbox, notify = self.qualified(OUTBOX), self.qualified("syncd_outbox_notify")
        return [
            f"""CREATE TABLE IF NOT EXISTS {outbox} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    op char(1) NOT NULL CHECK (op IN ('c', 'u', 'd')),
    row_key jsonb NOT NULL,
    before jsonb,
    after jsonb,
    tx_id bigint,
    created_at timestamptz NOT NULL DEFAULT now())""",
            f"CREATE INDEX IF NOT EXISTS syncd_outbox_source_id ON {outbox} (source, id)",
            # Every new row wakes the relays; PostgreSQL folds a transaction's identical
            # notifications into one, so a bulk write sends one per source.
            f"""CREATE OR REPLACE FUNCTION {notify}() RETURNS trigger LANGUAGE plpgsql AS $syncd$
BEGIN
    PERFORM pg_notify({self.literal(NOTIFY_CHANNEL)}, NEW.source);
    RETURN NULL;
END
$syncd$""",
            f"DROP TRIGGER IF EXISTS syncd_outbox_notify ON {outbox}",
            f"CREATE TRIGGER syncd_outbox_notify AFTER INSERT ON {outbox} "
            f"FOR EACH ROW EXECUTE FUNCTION {notify}()",
        ]

    def drop_outbox(self) -> list[str]:
        return [
            f"DROP TABLE IF EXISTS {self.qualified(OUTBOX)}",
            f"DROP FUNCTION IF EXISTS {self.qualified('syncd_outbox_notify')}()",
        ]

    def capture_function(self, source: str) -> str:
        """The source's trigger function: TG_ARGV names the key columns, in key order."""
        name = self.qualified(self.checked_name(self.function_name(source)))
        return f"""CREATE OR REPLACE FUNCTION {name}()
RETURNS trigger LANGUAGE plpgsql AS $syncd$
DECLARE
    old_row jsonb;
    new_row jsonb;
    row_key jsonb := '[]';
    key_column text;
    kept_column text;
    is_document boolean;
    kept text;
BEGIN
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
    -- json and jsonb travel as their text, as logical capture sends them (to_jsonb would
    -- respace, reorder and dedupe json, and make a JSON null of a json 'null'); so does a
    -- float's -0 (a jsonb number has none).
    FOR kept_column, is_document IN SELECT attname, atttypid IN ('json'::regtype,
            'jsonb'::regtype) FROM pg_attribute
            WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped AND atttypid IN
            ('json'::regtype, 'jsonb'::regtype, 'float4'::regtype, 'float8'::regtype) LOOP
        IF old_row IS NOT NULL THEN
            IF is_document THEN
                EXECUTE 'SELECT ($1).' || quote_ident(kept_column) || '::text'
                    USING OLD INTO kept;
            ELSE
                kept := (row_to_json(OLD) -> kept_column)::text;
            END IF;
            IF kept IS NOT NULL AND (is_document OR kept = '-0') THEN
                old_row := jsonb_set(old_row, ARRAY[kept_column], to_jsonb(kept));
            END IF;
        END IF;
        IF new_row IS NOT NULL THEN
            IF is_document THEN
                EXECUTE 'SELECT ($1).' || quote_ident(kept_column) || '::text'
                    USING NEW INTO kept;
            ELSE
                kept := (row_to_json(NEW) -> kept_column)::text;
            END IF;
            IF kept IS NOT NULL AND (is_document OR kept = '-0') THEN
                new_row := jsonb_set(new_row, ARRAY[kept_column], to_jsonb(kept));
            END IF;
        END IF;
    END LOOP;
    FOREACH key_column IN ARRAY TG_ARGV LOOP
        row_key := row_key || jsonb_build_array(coalesce(new_row, old_row) -> key_column);
    END LOOP;
    INSERT INTO {self.qualified(OUTBOX)}
        (source, schema_name, table_name, op, row_key, before, after, tx_id)
    VALUES ({self.literal(source)}, TG_TABLE_SCHEMA, TG_TABLE_NAME,
            CASE TG_OP WHEN 'INSERT' THEN 'c' WHEN 'UPDATE' THEN 'u' ELSE 'd' END,
            row_key, old_row, new_row, txid_current());
    RETURN NULL;
END
$syncd$"""

    def drop_function(self, source: str) -> str:
        return f"DROP FUNCTION IF EXISTS {self.qualified(self.function_name(source))}() CASCADE"

    def installed_triggers(self) -> str:
        # (function, schema, table): every source's capture function in the outbox's schema,
        # with each table it is the trigger of (NULLs for a source without tables).
        return (
            "SELECT p.proname, n.nspname, c.relname FROM pg_proc p "
            "JOIN pg_namespace pn ON pn.oid = p.pronamespace "
            "LEFT JOIN pg_trigger t ON t.tgfoid = p.oid AND NOT t.tgisinternal "
            "LEFT JOIN pg_class c ON c.oid = t.tgrelid "
            "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE pn.nspname = current_schema() "
            # A regular expression, not LIKE: psycopg2 would read LIKE's % as a parameter.
            "AND p.proname ~ '^syncd_.+_capture$'"
        )

    def captured_tables(self, installed: Sequence[Sequence[Any]], source: str) -> set[Table]:
        ours = self.function_name(source)
        return {
            (schema, table) for function, schema, table in installed if function == ours and table
        }

    def other_sources_installed(self, installed: Sequence[Sequence[Any]], source: str) -> bool:
        return any(function != self.function_name(source) for function, _, _ in installed)

    def capture_triggers(self, source: str, table: SourceTable) -> list[str]:
        name = self.quote(self.checked_name(self.function_name(source)))
        target = f"{self.quote(table.schema)}.{self.quote(table.name)}"
        key_arguments = ", ".join(self.literal(column) for column in table.key)
        return [
            f"DROP TRIGGER IF EXISTS {name} ON {target}",
            f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {target} FOR EACH ROW "
            f"EXECUTE FUNCTION {self.qualified(self.function_name(source))}({key_arguments})",
        ]

    def row_json(self, row: str, table: SourceTable) -> str:
        # As capture_function makes it: to_jsonb of every column, json(b) columns as text;
        # then as text, which syncd parses keeping every digit (psycopg2 would make floats).
        if not table.json and not table.floats:
            return f"to_jsonb({row})::text"
        kept = [f"{self.literal(c)}, {row}.{self.quote(c)}::text" for c in sorted(table.json)]
        kept += [
            f"{self.literal(c)}, CASE WHEN {row}.{self.quote(c)}::text = '-0' THEN to_jsonb("
            f"'-0'::text) ELSE to_jsonb({row}.{self.quote(c)}) END"
            for c in sorted(table.floats)
        ]
        return f"(to_jsonb({row}) || jsonb_build_object({', '.join(kept)}))::text"

    def select_batch(self) -> str:
        # jsonb as text: syncd parses it keeping every digit (psycopg2 would make floats).
        columns = COLUMNS.format(before='"before"::text', after='"after"::text')
        columns = columns.replace("row_key", "row_key::text")
        return (
            f"SELECT {columns}, {self.created_ms} AS created_ms FROM {OUTBOX} "
            "WHERE source = :source ORDER BY id LIMIT :limit"
        )

    def select_transactions(self) -> str:
        """Whole committed transactions (``transactions: atomic``), about ``:limit`` rows.

        One statement, so one snapshot: every transaction in it is committed, and all its rows
        are there. Ordered by each transaction's last outbox id: a transaction that waited for
        another's row lock, or read what another committed, wrote its rows after that commit,
        so its last id is the higher one — the order of their commits wherever they share a
        row. A transaction still open is left for a later poll (its commit is later, too).
        """
        columns = COLUMNS.format(before='"before"::text', after='"after"::text')
        columns = columns.replace("row_key", "row_key::text").replace("tx_id", "o.tx_id")
        columns = columns.replace("id,", "o.id,", 1)
        return (
            "WITH txs AS (SELECT tx_id, max(id) AS last_id, count(*) AS n"
            f" FROM {OUTBOX} WHERE source = :source GROUP BY tx_id),"
            " ordered AS (SELECT tx_id, last_id, sum(n) OVER (ORDER BY last_id) - n AS before_n"
            " FROM txs)"
            f" SELECT {columns}, {self.created_ms} AS created_ms"
            f" FROM {OUTBOX} o JOIN ordered t ON o.tx_id IS NOT DISTINCT FROM t.tx_id"
            " WHERE o.source = :source AND t.before_n < :limit ORDER BY t.last_id, o.id"
        )

    def drop_triggers(self, source: str, schema: str, table: str) -> list[str]:
        name = self.quote(self.function_name(source))
        return [f"DROP TRIGGER IF EXISTS {name} ON {self.quote(schema)}.{self.quote(table)}"]

    def lock(self, source: str, wait_s: float) -> list[str]:
        # lock_timeout 0 would mean "wait for ever": at least 1 ms.
        wait_ms = max(1, round(wait_s * 1000))
        return [
            "BEGIN",
            f"SET LOCAL lock_timeout = '{wait_ms}ms'",
            f"SELECT pg_advisory_xact_lock({advisory_lock_key(source)})",
        ]

    def lock_refused(self, error: BaseException) -> bool:
        return getattr(error, "pgcode", None) == "55P03"  # lock_not_available


class _RowTriggers(OutboxSql):
    """SQLite and MariaDB: three triggers per table, each listing the table's columns."""

    def json_object(self, row: str, table: SourceTable) -> str:
        raise NotImplementedError

    def json_array(self, row: str, table: SourceTable) -> str:
        raise NotImplementedError

    def row_json(self, row: str, table: SourceTable) -> str:
        return self.json_object(row, table)

    def trigger_body(self, source: str, table: SourceTable, op: str) -> str:
        before = self.row_json("OLD", table) if op != "c" else "NULL"
        after = self.row_json("NEW", table) if op != "d" else "NULL"
        key = self.json_array("OLD" if op == "d" else "NEW", table)
        return (
            f"INSERT INTO {OUTBOX} (source, schema_name, table_name, op, row_key, "
            f"{self.quote('before')}, {self.quote('after')}) VALUES ({self.literal(source)}, "
            f"{self.literal(table.schema)}, {self.literal(table.name)}, '{op}', {key}, "
            f"{before}, {after})"
        )

    def captured_tables(self, installed: Sequence[Sequence[Any]], source: str) -> set[Table]:
        # Ours: named for source and the very table it is on (which tells "a" + "b_c" from
        # "a_b" + "c", and check_collisions keeps the two from sharing a name).
        return {
            (self.default_schema, table)
            for name, table in installed
            if name in self.trigger_names(source, table)
        }

    def other_sources_installed(self, installed: Sequence[Sequence[Any]], source: str) -> bool:
        return any(
            _ROW_TRIGGER.fullmatch(name) and name not in self.trigger_names(source, table)
            for name, table in installed
        )

    def check_collisions(
        self, installed: Sequence[Sequence[Any]], source: str, table: SourceTable
    ) -> None:
        names = set(self.trigger_names(source, table.name))
        for name, other_table in installed:
            if name in names and other_table != table.name:
                raise CaptureError(
                    f"trigger {name} on table {other_table} (another source's) has the name "
                    f"source {source}'s trigger on {table.name} needs: rename a source"
                )

    def capture_triggers(self, source: str, table: SourceTable) -> list[str]:
        statements = self.drop_triggers(source, table.schema, table.name)
        names = [self.checked_name(n) for n in self.trigger_names(source, table.name)]
        for name, (_, event, op) in zip(names, _EVENTS, strict=True):
            statements.append(
                self.create_trigger(name, event, table, self.trigger_body(source, table, op))
            )
        return statements

    def create_trigger(self, name: str, event: str, table: SourceTable, body: str) -> str:
        raise NotImplementedError


class SqliteOutbox(_RowTriggers):
    """Triggers with json_object over the columns; the relay's lock is the write lock."""

    backend = "sqlite"
    max_identifier = 1000
    sa_dialect = sqlite.dialect()
    created_ms = (
        "CAST(strftime('%s', created_at) AS INTEGER) * 1000"
        " + CAST(substr(strftime('%f', created_at), 4) AS INTEGER)"
    )
    begin_ddl = "BEGIN IMMEDIATE"  # takes the write lock at once, not at the first write

    def create_outbox(self) -> list[str]:
        # TEXT, not JSON: a column type without TEXT would get numeric affinity in SQLite.
        return [
            f"""CREATE TABLE IF NOT EXISTS {OUTBOX} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    schema_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('c', 'u', 'd')),
    row_key TEXT NOT NULL,
    "before" TEXT,
    "after" TEXT,
    tx_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))""",
            f"CREATE INDEX IF NOT EXISTS syncd_outbox_source_id ON {OUTBOX} (source, id)",
        ]

    def installed_triggers(self) -> str:
        return "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"

    def value(self, row: str, column: str) -> str:
        # Any SQLite column may hold a BLOB, which json_object refuses (and would fail the
        # application's write): bytes travel as PostgreSQL's bytea text, '\x' + hex.
        ref = f"{row}.{self.quote(column)}"
        return f"CASE typeof({ref}) WHEN 'blob' THEN '\\x' || lower(hex({ref})) ELSE {ref} END"

    def json_object(self, row: str, table: SourceTable) -> str:
        pairs = ", ".join(f"{self.literal(c)}, {self.value(row, c)}" for c in table.columns)
        return f"json_object({pairs})"

    def json_array(self, row: str, table: SourceTable) -> str:
        return f"json_array({', '.join(self.value(row, c) for c in table.key)})"

    def create_trigger(self, name: str, event: str, table: SourceTable, body: str) -> str:
        return (
            f"CREATE TRIGGER {self.quote(name)} AFTER {event} ON {self.quote(table.name)} "
            f"FOR EACH ROW BEGIN {body}; END"
        )

    def lock(self, source: str, wait_s: float) -> list[str]:
        # The write lock is the relay's lock: no two relays, and no writer, between the
        # read and the delete. busy_timeout is how long BEGIN IMMEDIATE waits for it.
        return [f"PRAGMA busy_timeout = {max(0, round(wait_s * 1000))}", "BEGIN IMMEDIATE"]

    def lock_refused(self, error: BaseException) -> bool:
        return (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF == 5  # SQLITE_BUSY


class MysqlOutbox(_RowTriggers):
    """MariaDB and MySQL: triggers with JSON_OBJECT; the relay's lock is GET_LOCK."""

    backend = "mysql"
    max_identifier = 64
    sa_dialect = mysql.dialect()
    created_ms = "CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED)"
    begin_ddl = ""  # every CREATE and DROP commits on its own

    def literal(self, text: str) -> str:
        # MySQL reads backslashes in string literals as escapes.
        return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"

    def create_outbox(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {OUTBOX} (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source VARCHAR(64) NOT NULL,
    schema_name VARCHAR(64) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    op CHAR(1) NOT NULL,
    row_key JSON NOT NULL,
    `before` JSON,
    `after` JSON,
    tx_id BIGINT,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY syncd_outbox_source_id (source, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        ]

    def installed_triggers(self) -> str:
        return (
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE()"
        )

    def value(self, row: str, table: SourceTable, column: str) -> str:
        ref = f"{row}.{self.quote(column)}"
        if column in table.binary:
            # Bytes as PostgreSQL's bytea text, not as a string of arbitrary bytes.
            return f"CONCAT({self.literal(chr(92) + 'x')}, LOWER(HEX({ref})))"
        return ref

    def json_object(self, row: str, table: SourceTable) -> str:
        pairs = ", ".join(f"{self.literal(c)}, {self.value(row, table, c)}" for c in table.columns)
        return f"JSON_OBJECT({pairs})"

    def json_array(self, row: str, table: SourceTable) -> str:
        return f"JSON_ARRAY({', '.join(self.value(row, table, c) for c in table.key)})"

    def create_trigger(self, name: str, event: str, table: SourceTable, body: str) -> str:
        # One statement, no BEGIN … END: no client DELIMITER games needed.
        return (
            f"CREATE TRIGGER {self.quote(name)} AFTER {event} ON {self.quote(table.name)} "
            f"FOR EACH ROW {body}"
        )

    def lock_name(self, source: str) -> str:
        # GET_LOCK names are server-wide: the database keeps two databases' relays apart.
        name = f"{OUTBOX}_{self.default_schema}_{source}"
        if len(name) > 64:
            name = f"{OUTBOX}_{hashlib.sha256(name.encode()).hexdigest()[:40]}"
        return name

    def lock(self, source: str, wait_s: float) -> list[str]:
        return [f"SELECT GET_LOCK({self.literal(self.lock_name(source))}, {max(0.0, wait_s):.3f})"]

    def unlock(self, source: str, commit: bool) -> list[str]:
        # Each statement commits on its own (autocommit): the lock is the session's.
        return [f"SELECT RELEASE_LOCK({self.literal(self.lock_name(source))})"]

    def lock_obtained(self, result: Any) -> bool:
        return bool(result == 1)


_DIALECTS: dict[str, type[OutboxSql]] = {
    "postgresql": PostgresOutbox,
    "sqlite": SqliteOutbox,
    "mysql": MysqlOutbox,
    "mariadb": MysqlOutbox,
}


def outbox_sql(backend: str, default_schema: str) -> OutboxSql:
    """The statements for ``backend`` (SQLAlchemy's backend name: postgresql, sqlite, mysql)."""
    dialect = _DIALECTS.get(backend)
    if dialect is None:
        raise CaptureError(
            f"outbox capture supports {', '.join(sorted(_DIALECTS))} sources, not {backend}"
        )
    return dialect(default_schema)
