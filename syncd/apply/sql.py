"""The SQL applier: one target database, batches applied through SQLAlchemy Core.

Every batch is one transaction holding the row writes *and* the positions that guard them, so a
row and the position it reflects are never seen apart. The applier composes one module per
concern: ``targets`` (the tables, checked against the mappings), ``positions`` (the position
guard's table), ``plan`` (which change applies), ``rows`` (the writes), ``toast`` and
``truncate``, ``deadline`` and ``translate`` (driver errors become syncd's own, here at the
edge: ``TargetUnavailable`` or ``PermanentApplyError``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from syncd.apply import dialect, evolve, targets
from syncd.apply.deadline import Deadline
from syncd.apply.plan import Verdict, plan_batch
from syncd.apply.positions import Positions
from syncd.apply.rows import RowWriter
from syncd.apply.stream import Stream
from syncd.apply.targets import Target
from syncd.apply.toast import carry_over, complete_rows
from syncd.apply.translate import translated
from syncd.apply.truncate import truncate
from syncd.change import TABLE_KEY, Change
from syncd.errors import MappingApplyError, PermanentApplyError, Problem
from syncd.mapping import Mapping
from syncd.values import TargetLimits

log = logging.getLogger(__name__)


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
        self._positions = Positions(name, positions, self._dialect)
        self._rows = RowWriter(self._dialect)
        self._targets: dict[str, Target] = {}

    # -- start-up -------------------------------------------------------------------------

    def prepare(self, create: bool = True) -> list[Problem]:
        """Check every mapping against its target table; create the positions table if missing.

        Returns the problems found (missing tables or columns, no unique key for ON CONFLICT).
        With ``create=False`` (``syncd check``) nothing is written.
        """
        problems: list[Problem] = []
        if create:
            self._positions.create(self._transaction)
        with self._transaction() as conn:
            inspector = sa.inspect(conn)
            for mapping in self._mappings:
                target = targets.describe(
                    inspector, self.name, self._dialect_name, mapping, problems
                )
                if target is not None:
                    self._targets[mapping.name] = target
        return problems

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction, its errors translated."""
        with self._translated(), self._engine.begin() as conn:
            yield conn

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

    # -- applying -------------------------------------------------------------------------

    def apply_batch(self, changes: Sequence[Change]) -> list[Verdict]:
        return self._apply(changes, commit=True)

    def try_batch(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` in a transaction that is rolled back: does the target take them?

        Raises as ``apply_batch`` does; ``syncd.pipeline.whole`` asks it to find the change for
        which the target rejects a whole source transaction, without committing any of it.
        """
        self._apply(changes, commit=False)

    def _apply(self, changes: Sequence[Change], commit: bool) -> list[Verdict]:
        # Before the transaction: ALTER TABLE from another connection would wait for it.
        if any(change.new_columns for change in changes):
            self._add_new_columns(changes)
        with (
            self._translated(),
            self._engine.connect() as conn,
            self._deadline(conn),
            conn.begin() as transaction,
        ):
            verdicts = self._apply_in(conn, changes)
            if not commit:
                transaction.rollback()
        return verdicts

    def begin_stream(self) -> Stream:
        """One transaction that takes changes piece by piece (``syncd.apply.stream``)."""
        return Stream(self._engine, self._translated, self._deadline, self._apply_in)

    def _apply_in(self, conn: Connection, changes: Sequence[Change]) -> list[Verdict]:
        verdicts: list[Verdict] = [Verdict.STALE] * len(changes)
        by_mapping: dict[str, list[int]] = defaultdict(list)
        for i, change in enumerate(changes):
            by_mapping[change.mapping.name].append(i)
        for indexes in by_mapping.values():
            subset = [changes[i] for i in indexes]
            for i, verdict in zip(indexes, self._apply_mapping(conn, subset), strict=True):
                verdicts[i] = verdict
        return verdicts

    def _add_new_columns(self, changes: Sequence[Change]) -> None:
        """on_new_column: add — first the columns these changes carry that their tables lack
        (syncd.apply.evolve), then every mapping of those tables sees them.

        Only this (the apply) thread writes ``_targets``; the router reads it for each event,
        and one that still finds the old Target marks its change again, which then adds
        nothing.
        """
        with self._translated():
            wanted = evolve.wanted_columns(changes)
            for table, columns in wanted.items():
                evolve.add_columns(self._engine, self.name, table, columns)
            with self._engine.connect() as conn:
                inspector = sa.inspect(conn)
                for mapping in self._mappings:
                    if mapping.target_table in wanted:
                        target = targets.describe(
                            inspector, self.name, self._dialect_name, mapping, []
                        )
                        if target is not None:
                            self._targets[mapping.name] = target

    def _apply_mapping(self, conn: Connection, changes: list[Change]) -> list[Verdict]:
        """One mapping's changes in arrival order; a truncate is a barrier between runs."""
        verdicts: list[Verdict] = []
        run: list[Change] = []
        for change in changes:
            if change.truncates:
                verdicts += self._apply_run(conn, run) if run else []
                target = self._targets[change.mapping.name]
                verdicts.append(truncate(conn, self._positions, target, change))
                run = []
            else:
                run.append(change)
        return verdicts + (self._apply_run(conn, run) if run else [])

    def _apply_run(self, conn: Connection, changes: list[Change]) -> list[Verdict]:
        mapping = changes[0].mapping
        keys = list({c.key for c in changes} | {TABLE_KEY})
        stored = self._positions.read(conn, mapping, keys)
        actions, verdicts = plan_batch(changes, stored)
        target = self._targets[mapping.name]
        for change, verdict in zip(changes, verdicts, strict=True):
            if change.moved_from and change.unavailable and verdict is Verdict.APPLIED:
                carry_over(conn, target, change, actions)
        advanced = self._positions.advance(conn, mapping, list(actions.values()))
        # A key whose position another writer advanced meanwhile lost the race: its changes are
        # older than the row now reflects, exactly as if they had arrived late.
        for i, change in enumerate(changes):
            if verdicts[i] is Verdict.APPLIED and change.key not in advanced:
                verdicts[i] = Verdict.STALE
        self._rows.write(conn, mapping, target, [a for a in actions.values() if a.key in advanced])
        # A snapshot event older than its row may still complete it — also when the change
        # that made the row incomplete came in this same batch.
        snapshots = [
            c
            for c, v in zip(changes, verdicts, strict=True)
            if c.event.op == "r" and (v is not Verdict.APPLIED or c.key not in advanced)
        ]
        if snapshots:
            complete_rows(conn, self._positions, target, self._dialect, snapshots)
        return verdicts

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

    def _translated(self) -> AbstractContextManager[None]:
        """Driver and SQLAlchemy errors become syncd's own, decided by driver codes."""
        return translated(self.name, self._dialect)

    def close(self) -> None:
        self._deadline_watch.close()
        self._engine.dispose()
