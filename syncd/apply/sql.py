"""The SQL applier: one target database, batches applied through SQLAlchemy Core.

Every batch is one transaction holding the row writes *and* the positions that guard them, so a
row and the position it reflects are never seen apart. Driver exceptions are translated here,
at the edge, into ``TargetUnavailable`` or ``PermanentApplyError``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.engine import Connection, Engine

from syncd import jsonvalue
from syncd.apply import core, dialect
from syncd.apply.classify import Failure
from syncd.apply.core import Upsert
from syncd.apply.deadline import Deadline
from syncd.apply.fit import misfits
from syncd.apply.plan import KeyAction, Verdict, plan_batch, position_guard
from syncd.change import TABLE_KEY, Change
from syncd.errors import (
    MappingApplyError,
    PermanentApplyError,
    Problem,
    SyncdError,
    TargetOutage,
    TargetUnavailable,
    first_line,
)
from syncd.mapping import Mapping
from syncd.values import TargetLimits

log = logging.getLogger(__name__)


def positions_table(name: str) -> sa.Table:
    """The position guard's table: the last applied source position per (mapping, key).

    Deleted keys keep their row (``deleted``), so a stale replay of a create after its delete is
    still recognised as stale. The key is 750 characters: 3,000 bytes in MySQL's utf8mb4, under
    InnoDB's 3,072-byte index limit. MySQL compares it byte for byte (utf8mb4_bin), not by its
    default case-insensitive collation, so keys differing only in case stay apart.
    """
    schema, table = split_table_name(name)
    return sa.Table(
        table,
        sa.MetaData(),
        sa.Column("mapping", _binary_string(100), primary_key=True),
        sa.Column("row_key", _binary_string(650), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(200)),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("source_ts_ms", sa.BigInteger),
        # Written by a change that lacked columns the source could not send (see KeyAction).
        sa.Column("incomplete", sa.Boolean),
        sa.Column(
            "applied_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
        schema=schema,
    )


def _binary_string(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql_types.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


@dataclass(frozen=True)
class Target:
    """A mapping's target table as the database describes it."""

    table: sa.TableClause
    columns: frozenset[str]
    key: tuple[str, ...]
    limits: TargetLimits  # what its columns hold: checked when events are routed
    types: dict[str, Any]  # column -> its SQLAlchemy type, as reflected


def split_table_name(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


class SqlApplier:
    """Applies batches to one target database (PostgreSQL, SQLite, or MariaDB/MySQL)."""

    def __init__(
        self,
        name: str,
        url: str,
        mappings: Sequence[Mapping],
        positions: str,
        timeout_s: float = 30.0,
    ):
        self.name = name
        self._mappings = list(mappings)
        try:
            backend = sa.engine.make_url(url).get_backend_name()
        except sa.exc.ArgumentError as exc:
            raise PermanentApplyError(f"database {name}: cannot use URL: {exc}") from exc
        try:
            # Each module: engine(url, timeout_s), cancel(dbapi_connection), classify(error),
            # and the statements of syncd.apply.core: position_reader, position_advancer and
            # upserter.
            self._dialect = dialect(backend)
        except PermanentApplyError as exc:
            raise PermanentApplyError(f"database {name}: {exc}") from exc
        self._dialect_name = backend
        # No pool_pre_ping: a dead pooled connection fails the first statement, the pool
        # invalidates it, and the batch is retried as an outage — without a ping per batch.
        self._engine: Engine = self._dialect.engine(url, timeout_s)
        self._timeout_s = timeout_s
        self._deadline_watch = Deadline(timeout_s, self._cancel, name)
        self._positions = positions_table(positions)
        self._read_positions = self._dialect.position_reader(self._positions)
        self._advance = self._dialect.position_advancer(self._positions)
        self._targets: dict[str, Target] = {}
        self._upserts: dict[tuple[str, str | None, tuple[str, ...]], Upsert] = {}

    # -- start-up -------------------------------------------------------------------------

    def prepare(self, create: bool = True) -> list[Problem]:
        """Check every mapping against its target table; create the positions table if missing.

        Returns the problems found (missing tables or columns, no unique key for ON CONFLICT).
        With ``create=False`` (``syncd check``) nothing is written.
        """
        problems: list[Problem] = []
        if create:
            self._create_positions_table()
        with self._translated(), self._engine.begin() as conn:
            inspector = sa.inspect(conn)
            for mapping in self._mappings:
                target = self._describe(inspector, mapping, problems)
                if target is not None:
                    self._targets[mapping.name] = target
        return problems

    def _create_positions_table(self, attempts: int = 3) -> None:
        """Create the positions table, or add what an older syncd's lacks; safe to race.

        Daemons started together on a fresh target all find the table missing and all create
        it; the losers' CREATE (or ALTER) fails — PostgreSQL: a unique violation in pg_type,
        MySQL and SQLite: "already exists" — once the winner commits. A loser then accepts the
        winner's table: it looks again and finds nothing left to do. An error that persists
        through every look (no rights, say) is the real one.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self._translated(), self._engine.begin() as conn:
                    self._positions.create(conn, checkfirst=True)
                    self._add_missing_position_columns(conn)
                return
            except PermanentApplyError as exc:
                if attempt == attempts:
                    raise
                log.debug("database %s: positions table changed meanwhile: %s", self.name, exc)

    def _add_missing_position_columns(self, conn: Connection) -> None:
        """Upgrade a positions table made by an older syncd: add the columns it lacks."""
        inspector = sa.inspect(conn)
        table = self._positions
        present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                name = conn.dialect.identifier_preparer.format_table(table)
                log.info("database %s: adding column %s to %s", self.name, column.name, name)
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column.name} {kind}")

    def target_columns(self, mapping: Mapping) -> frozenset[str]:
        return self._targets[mapping.name].columns

    def target_limits(self, mapping: Mapping) -> TargetLimits:
        return self._targets[mapping.name].limits

    def check_row(self, mapping: Mapping, key: str, row: dict[str, Any]) -> None:
        """MappingApplyError if the target cannot hold a value of ``row`` (NaN, ±Infinity).

        Asked of events that carry such values only, before they are batched: the event is
        dead-lettered alone, naming the column, instead of failing its batch in the database.
        """
        target = self._targets.get(mapping.name)
        problem = None if target is None else self._dialect.check_row(row, target.types)
        if problem:
            raise MappingApplyError(
                f"mapping {mapping.name} key {key}: {self.name}.{mapping.target_table} {problem}"
            )

    def _describe(
        self, inspector: sa.Inspector, mapping: Mapping, problems: list[Problem]
    ) -> Target | None:
        schema, name = split_table_name(mapping.target_table)
        where = f"{self.name}.{mapping.target_table}"

        def problem(message: str) -> None:
            text = f"mapping {mapping.name}: {message}"
            problems.append(Problem(mapping.file, mapping.line, text))

        if not inspector.has_table(name, schema=schema):
            problem(f"target table {where} does not exist; create it first")
            return None
        reflected = inspector.get_columns(name, schema=schema)
        columns = [c["name"] for c in reflected]
        present = set(columns)
        wanted = [c.target for c in mapping.columns or ()] + list(mapping.target_key)
        wanted += [c.target for c in mapping.set_columns]
        if mapping.on_delete.soft_column:
            wanted.append(mapping.on_delete.soft_column)
        missing = sorted({c for c in wanted if c not in present})
        if missing:
            problem(
                f"{where} has no column {', '.join(missing)} (it has: {', '.join(columns)}); "
                "fix the mapping's columns or add the column to the table"
            )
        for misfit in misfits(mapping, {c["name"]: c["type"] for c in reflected}):
            problem(f"{where}: {misfit}")
        if not self._has_unique_key(inspector, name, schema, set(mapping.target_key)):
            problem(
                f"{where} has no primary key or unique index on ({', '.join(mapping.target_key)}); "
                "upserts need one: add it, or change the mapping's key"
            )
        table = sa.table(name, *(sa.column(c) for c in columns), schema=schema)
        limits = TargetLimits.reflected(self._dialect_name, reflected)
        types = {c["name"]: c["type"] for c in reflected}
        return Target(table, frozenset(present), mapping.target_key, limits, types)

    @staticmethod
    def _has_unique_key(
        inspector: sa.Inspector, name: str, schema: str | None, key: set[str]
    ) -> bool:
        if set(inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]) == key:
            return True
        uniques: list[list[str | None]] = [
            list(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema)
        ]
        indexes = inspector.get_indexes(name, schema=schema)
        uniques += [list(i["column_names"]) for i in indexes if i["unique"]]
        return any(set(cols) == key for cols in uniques)

    # -- applying -------------------------------------------------------------------------

    def apply_batch(self, changes: Sequence[Change]) -> list[Verdict]:
        verdicts: list[Verdict] = [Verdict.STALE] * len(changes)
        by_mapping: dict[str, list[int]] = defaultdict(list)
        for i, change in enumerate(changes):
            by_mapping[change.mapping.name].append(i)
        with self._translated(), self._engine.begin() as conn, self._deadline(conn):
            for indexes in by_mapping.values():
                subset = [changes[i] for i in indexes]
                for i, verdict in zip(indexes, self._apply_mapping(conn, subset), strict=True):
                    verdicts[i] = verdict
        return verdicts

    def _apply_mapping(self, conn: Connection, changes: list[Change]) -> list[Verdict]:
        """One mapping's changes in arrival order; a truncate is a barrier between runs."""
        verdicts: list[Verdict] = []
        run: list[Change] = []
        for change in changes:
            if change.truncates:
                verdicts += self._apply_run(conn, run) if run else []
                verdicts.append(self._truncate(conn, change))
                run = []
            else:
                run.append(change)
        return verdicts + (self._apply_run(conn, run) if run else [])

    def _apply_run(self, conn: Connection, changes: list[Change]) -> list[Verdict]:
        mapping = changes[0].mapping
        keys = list({c.key for c in changes} | {TABLE_KEY})
        stored = self._read_positions(conn, mapping.name, keys)
        actions, verdicts = plan_batch(changes, stored)
        for change, verdict in zip(changes, verdicts, strict=True):
            if change.moved_from and change.unavailable and verdict is Verdict.APPLIED:
                self._carry_over(conn, mapping, change, actions)
        advanced = self._advance_positions(conn, mapping, list(actions.values()))
        # A key whose position another writer advanced meanwhile lost the race: its changes are
        # older than the row now reflects, exactly as if they had arrived late.
        for i, change in enumerate(changes):
            if verdicts[i] is Verdict.APPLIED and change.key not in advanced:
                verdicts[i] = Verdict.STALE
        self._write_rows(conn, mapping, [a for a in actions.values() if a.key in advanced])
        # A snapshot event older than its row may still complete it — also when the change
        # that made the row incomplete came in this same batch.
        snapshots = [
            c
            for c, v in zip(changes, verdicts, strict=True)
            if c.event.op == "r" and (v is not Verdict.APPLIED or c.key not in advanced)
        ]
        if snapshots:
            self._complete_rows(conn, mapping, snapshots)
        return verdicts

    def _carry_over(
        self, conn: Connection, mapping: Mapping, change: Change, actions: dict[str, KeyAction]
    ) -> None:
        """A key change that lacks columns (TOAST) takes them from the row it moves.

        From this batch's earlier changes of the old key if they set them, else from the old
        row as the target holds it.
        """
        assert change.moved_from is not None
        action = actions[change.key]
        missing = [c for c in change.unavailable if c not in action.row]
        old = actions.get(change.moved_from.key)
        values = {c: old.row[c] for c in missing if old is not None and c in old.row}
        rest = [c for c in missing if c not in values]
        target = self._targets[mapping.name]
        rest = [c for c in rest if c in target.columns]
        if rest:
            where = self._key_clause(target, [KeyAction("", change.moved_from.target_key, 0)])
            query = sa.select(*(target.table.c[c] for c in rest)).where(where)
            found = conn.execute(query).first()
            if found is not None:
                values.update(zip(rest, found, strict=True))
        for column, value in values.items():
            action.row.setdefault(column, value)
        if all(values.get(c) is not None for c in missing):
            action.incomplete = False

    def _complete_rows(self, conn: Connection, mapping: Mapping, changes: list[Change]) -> None:
        """Fill the columns an incomplete row lacks from its (older) snapshot event.

        An update that left a TOASTed column unchanged does not carry it; when that update
        created the row (the row predates the stream, and its snapshot event came later), the
        column is NULL in the target. The snapshot event is then older than the row, so it does
        not apply — but its value of that column is the current one (an update that changed
        the column would have carried it). Only NULL columns of rows marked incomplete are
        filled, and the mark goes.
        """
        p = self._positions.c
        keys = [c.key for c in changes]
        marked: set[str] = set()
        for start in range(0, len(keys), core.CHUNK):
            query = sa.select(p.row_key).where(
                p.mapping == mapping.name,
                p.row_key.in_(keys[start : start + core.CHUNK]),
                p.incomplete.is_(True),
                p.deleted.is_(False),
            )
            marked.update(conn.execute(query).scalars())
        target = self._targets[mapping.name]
        for change in changes:
            if change.key not in marked or not change.row:
                continue
            fill = {
                column: sa.func.coalesce(
                    target.table.c[column], self._dialect.binder(target.types.get(column))(value)
                )
                for column, value in change.row.items()
                if column not in target.key and column in target.columns
            }
            action = KeyAction(change.key, change.target_key, 0)
            if fill:
                conn.execute(
                    sa.update(target.table).where(self._key_clause(target, [action])).values(fill)
                )
            conn.execute(
                sa.update(self._positions)
                .where(p.mapping == mapping.name, p.row_key == change.key)
                .values(incomplete=False)
            )
            marked.discard(change.key)

    def _truncate(self, conn: Connection, change: Change) -> Verdict:
        """The source emptied the table: so does the target, but for rows set after it.

        A key whose stored position is newer than the truncate (a later change that arrived
        first) keeps its row. The table's position (TABLE_KEY) keeps older changes out.
        """
        mapping = change.mapping
        stored = self._read_positions(conn, mapping.name, [TABLE_KEY]).get(TABLE_KEY)
        verdict = position_guard(stored, change.position)
        if verdict is not Verdict.APPLIED:
            return verdict
        action = KeyAction(TABLE_KEY, {}, change.position, delete=True, last=change)
        if TABLE_KEY not in self._advance_positions(conn, mapping, [action]):
            return Verdict.STALE
        target = self._targets[mapping.name]
        where = self._survivors_excluded(conn, mapping, target, change.position)
        soft_column = mapping.on_delete.soft_column
        if mapping.on_delete.action == "delete":
            conn.execute(sa.delete(target.table).where(where))
        elif soft_column:
            column = target.table.c[soft_column]
            stamp = {soft_column: _deleted_at(action)}
            conn.execute(sa.update(target.table).where(where, column.is_(None)).values(stamp))
        return Verdict.APPLIED

    def _survivors_excluded(
        self, conn: Connection, mapping: Mapping, target: Target, position: int
    ) -> sa.ColumnElement[bool]:
        p = self._positions.c
        newer = conn.execute(
            sa.select(p.row_key).where(
                p.mapping == mapping.name,
                p.position > position,
                p.row_key != TABLE_KEY,
                p.deleted.is_(False),
            )
        ).scalars()
        survivors = [
            KeyAction(
                key,
                mapping.to_target_row(dict(zip(mapping.key, jsonvalue.loads(key), strict=True))),
                0,
            )
            for key in newer
        ]
        return sa.not_(self._key_clause(target, survivors)) if survivors else sa.true()

    def _advance_positions(
        self, conn: Connection, mapping: Mapping, actions: list[KeyAction]
    ) -> set[str]:
        """Move each key's position forward, only where it is still older; the keys moved."""
        rows = [
            {
                "mapping": mapping.name,
                "row_key": a.key,
                "position": a.position,
                "event_id": a.last.event.event_id[:200] if a.last else None,
                "deleted": a.delete,
                "source_ts_ms": a.last.event.source_ts_ms if a.last else None,
                "incomplete": a.incomplete,
            }
            for a in actions
        ]
        return self._advance(conn, rows) if rows else set()

    def _write_rows(self, conn: Connection, mapping: Mapping, actions: list[KeyAction]) -> None:
        target = self._targets[mapping.name]
        soft_column = mapping.on_delete.soft_column
        hard = mapping.on_delete.action == "delete"
        if hard:
            self._delete(conn, target, [a for a in actions if a.delete or a.replace])
        elif soft_column:
            stamps = [a for a in actions if a.delete and not a.row]
            self._soft_delete(conn, target, soft_column, stamps)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for action in actions:
            if not action.row or (action.delete and hard):
                continue
            row = dict(action.row)
            row.update(action.target_key)
            if soft_column:
                # Stamped if its newest change is a delete; cleared if it was created again.
                row[soft_column] = _deleted_at(action) if action.delete else None
            by_columns[tuple(sorted(row))].append(row)
        for columns, rows in by_columns.items():
            self._upsert(target, columns)(conn, rows)

    def _upsert(self, target: Target, columns: tuple[str, ...]) -> Upsert:
        cache_key = (target.table.name, target.table.schema, columns)
        upsert = self._upserts.get(cache_key)
        if upsert is None:
            upsert = self._dialect.upserter(target.table, target.key, columns, target.types)
            self._upserts[cache_key] = upsert
        return upsert

    @staticmethod
    def _key_clause(target: Target, actions: list[KeyAction]) -> sa.ColumnElement[bool]:
        columns = [target.table.c[k] for k in target.key]
        if len(columns) == 1:
            return columns[0].in_([a.target_key[target.key[0]] for a in actions])
        keys = [tuple(a.target_key[k] for k in target.key) for a in actions]
        return sa.tuple_(*columns).in_(keys)

    def _delete(self, conn: Connection, target: Target, actions: list[KeyAction]) -> None:
        for start in range(0, len(actions), core.CHUNK):
            chunk = actions[start : start + core.CHUNK]
            conn.execute(sa.delete(target.table).where(self._key_clause(target, chunk)))

    def _soft_delete(
        self, conn: Connection, target: Target, column: str, actions: list[KeyAction]
    ) -> None:
        for action in actions:
            conn.execute(
                sa.update(target.table)
                .where(self._key_clause(target, [action]))
                .values({column: _deleted_at(action)})
            )

    # -- edges ----------------------------------------------------------------------------

    def _deadline(self, conn: Connection) -> AbstractContextManager[None]:
        """Cancel the running statement once the batch outlives ``timeout_s``.

        The database enforces the same limit per statement; this also covers a batch of many
        statements, or a server that stopped answering. The cancelled batch is retried.
        """
        return self._deadline_watch.armed(conn.connection.dbapi_connection)

    def _cancel(self, dbapi_connection: Any) -> None:
        log.warning("database %s: apply exceeded %.1f s, cancelling it", self.name, self._timeout_s)
        try:
            self._dialect.cancel(dbapi_connection)
        except Exception as exc:  # a failed cancel must not kill the deadline thread
            log.warning("database %s: cancelling failed: %s", self.name, exc)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Driver and SQLAlchemy errors become syncd's own, decided by driver codes."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            reason = f"database {self.name}: {first_line(exc.orig or exc)}"
            failure = self._dialect.classify(exc.orig)
            if exc.connection_invalidated or failure is Failure.OUTAGE:
                raise TargetOutage(reason) from exc
            if failure is Failure.TRANSIENT:
                raise TargetUnavailable(reason) from exc
            raise PermanentApplyError(reason) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise PermanentApplyError(f"database {self.name}: {first_line(exc)}") from exc
        except SyncdError:
            raise
        except Exception as exc:
            # Not from the server, and not a lost connection (the driver reports those as
            # DBAPI errors): the driver could not encode or adapt a value of this batch — a
            # UnicodeEncodeError, a ValueError, TypeError or OverflowError from its parameter
            # adaptation. Permanent for the events that caused it, which the halving in
            # resilient.py then finds; never an exception that ends the apply loop.
            log.debug("database %s: the driver refused a value", self.name, exc_info=True)
            reason = f"database {self.name}: the driver refused a value: {first_line(exc)}"
            raise PermanentApplyError(f"{reason} ({type(exc).__name__})") from exc

    def close(self) -> None:
        self._deadline_watch.close()
        self._engine.dispose()


def _deleted_at(action: KeyAction) -> str:
    """When the source deleted the row (its commit time), else now; ISO 8601 in UTC."""
    ts = action.last.event.source_ts_ms if action.last else None
    stamp = datetime.fromtimestamp(ts / 1000, UTC) if ts is not None else datetime.now(UTC)
    return stamp.isoformat(sep=" ")
