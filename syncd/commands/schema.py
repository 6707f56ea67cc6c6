"""``syncd schema [--mapping M…] [--apply]``, and the drift warnings of ``syncd check``.

For the mappings whose source is a capture source (``sources:``), the source's catalog says
what each target table needs (:mod:`syncd.commands.schema_plan`); ``syncd schema`` prints the DDL
that creates what the target lacks — the tables, their missing columns, the positions table —
as SQL a human can read and run, and ``--apply`` runs it, each statement on its own, so that
several runs (or daemons) at once are harmless. It never drops or narrows anything: a column
of another type is a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from syncd.apply import dialect as target_dialect
from syncd.apply.classify import Failure
from syncd.apply.evolve import CHANGES, add_column
from syncd.apply.positions import split_table_name
from syncd.capture import source_errors
from syncd.commands.schema_plan import (
    Changes,
    Statement,
    WantedTable,
    changes_for,
    merge,
    positions_changes,
)
from syncd.commands.schema_plan import wanted_columns as mapping_columns
from syncd.config import Config, SourceConfig
from syncd.errors import (
    ConfigError,
    PermanentApplyError,
    Problem,
    SyncdError,
    TargetOutage,
    first_line,
)
from syncd.mapping import Mapping
from syncd.schema import catalog
from syncd.schema.catalog import SourceTable

log = logging.getLogger(__name__)


@dataclass
class DatabasePlan:
    """What one target database needs."""

    name: str
    dialect: str
    tables: dict[str, WantedTable] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)


def captured(config: Config, mappings: Sequence[Mapping]) -> list[Mapping]:
    """The mappings whose source system is a capture source: the ones with a catalog."""
    return [m for m in mappings if m.source_system in config.sources]


def chosen(
    config: Config, mappings: Sequence[Mapping], names: Sequence[str] | None
) -> list[Mapping]:
    """The mappings ``--mapping`` names (all captured ones without it); ConfigError for a name
    that is no mapping, or one whose source is not captured."""
    if not names:
        return captured(config, mappings)
    by_name = {m.name: m for m in mappings}
    problems = []
    for name in names:
        mapping = by_name.get(name)
        if mapping is None:
            known = ", ".join(by_name) or "none"
            message = f"--mapping {name}: no such mapping (there are: {known})"
            problems.append(Problem(str(config.mappings_dir), None, message))
        elif mapping.source_system not in config.sources:
            problems.append(
                Problem(
                    mapping.file,
                    mapping.line,
                    f"mapping {name}: its source system {mapping.source_system} is not under "
                    "sources: in config.yaml, so syncd has no catalog to read its table from; "
                    "create the target table yourself",
                )
            )
    if problems:
        raise ConfigError(problems)
    return [by_name[name] for name in dict.fromkeys(names)]


def plan(config: Config, mappings: Sequence[Mapping]) -> list[DatabasePlan]:
    """Every target database's needs. ConfigError for mappings the catalog contradicts or
    whose types have no safe target type; SourceUnavailable, TargetUnavailable if one cannot
    be reached."""
    plans = _wanted(config, mappings, _source_tables(config, mappings))
    for db in plans:
        with _target(config, db.name) as conn:
            for wanted in db.tables.values():
                found = changes_for(conn, wanted)
                db.changes.statements += found.statements
                db.changes.warnings += found.warnings
            db.changes.statements += positions_changes(conn, config.apply.positions_table)
    return plans


def _wanted(
    config: Config, mappings: Sequence[Mapping], sources: dict[str, SourceTable]
) -> list[DatabasePlan]:
    """The target tables the mappings need, per database; ConfigError listing every problem."""
    plans: dict[str, DatabasePlan] = {}
    problems: list[Problem] = []
    for mapping in mappings:
        url = config.databases[mapping.target_database].url
        dialect = _dialect_name(sa.engine.make_url(url).get_backend_name())
        name = mapping.target_database
        db = plans.setdefault(name, DatabasePlan(name, dialect))
        source = sources.get(mapping.name)
        if source is None:
            problems.append(
                Problem(
                    mapping.file,
                    mapping.line,
                    f"mapping {mapping.name}: source {mapping.source_system} has no table "
                    f"{mapping.source_table}; fix source.table (or sources.{mapping.source_system}"
                    ".tables)",
                )
            )
            continue
        columns, found = mapping_columns(mapping, source, dialect)
        where = f"mapping {mapping.name}"
        problems += [Problem(mapping.file, mapping.line, f"{where}: {p}") for p in found]
        key = tuple(mapping.target_key)
        wanted = db.tables.setdefault(
            mapping.target_table, WantedTable(name, mapping.target_table, dialect, key)
        )
        db.changes.warnings += merge(wanted, mapping, columns)
    if problems:
        raise ConfigError(problems)
    return list(plans.values())


def write(plans: Sequence[DatabasePlan], out: TextIO) -> int:
    """The plans as SQL (everything else as comments); the number of statements."""
    count = 0
    for db in plans:
        if not db.changes.statements and not db.changes.warnings:
            continue
        out.write(f"-- database {db.name} ({db.dialect})\n")
        for warning in db.changes.warnings:
            out.write(f"-- warning: {warning}\n")
        for statement in db.changes.statements:
            out.write(f"-- {statement.what}\n{statement.sql};\n\n")
            count += 1
    return count


def apply(config: Config, plans: Sequence[DatabasePlan]) -> int:
    """Run every statement, each in its own transaction; the number run. A statement whose
    work another run did meanwhile (IF NOT EXISTS) changes nothing."""
    count = 0
    for db in plans:
        with _engine(config, db.name) as engine, _translated(config, db.name):
            for statement in db.changes.statements:
                if _run(engine, db.name, statement):
                    count += 1
    return count


def _run(engine: Engine, database: str, statement: Statement) -> bool:
    """Run one statement; False if another run had done its work (it changed nothing)."""
    if statement.change == "add_column":
        assert statement.column is not None and statement.column_type is not None
        return add_column(
            engine, database, statement.table, statement.column, statement.column_type
        )
    schema, name = split_table_name(statement.table)
    if sa.inspect(engine).has_table(name, schema=schema):
        return False
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement.sql)
    except sa.exc.DBAPIError:
        # Two runs at once: PostgreSQL's IF NOT EXISTS can still lose the race in its
        # catalog (a unique violation); the winner's table is the one wanted.
        if sa.inspect(engine).has_table(name, schema=schema):
            return False
        raise
    log.warning("database %s: schema change: %s", database, statement.what)
    CHANGES.count(database, statement.table, statement.change)
    return True


def drift(config: Config, mappings: Sequence[Mapping]) -> list[str]:
    """``syncd check``'s warnings: what the capture sources' tables have that their targets
    lack, or hold as another type (the tables themselves are checked as errors elsewhere)."""
    warnings: list[str] = []
    try:
        plans = plan(config, captured(config, mappings))
    except ConfigError as exc:
        return [problem.message for problem in exc.problems]
    for db in plans:
        warnings += db.changes.warnings
        for statement in db.changes.statements:
            if statement.change == "add_column":
                warnings.append(
                    f"{db.name}.{statement.table} has no column {statement.column}, which its "
                    f"source has ({statement.column_type} here): syncd schema --apply adds it; "
                    "so does on_new_column: add, with the first event that carries it"
                )
    return warnings


# ---------------------------------------------------------------------- the databases


def _source_tables(config: Config, mappings: Sequence[Mapping]) -> dict[str, SourceTable]:
    """Mapping name -> its source table as the source's catalog describes it."""
    found: dict[str, SourceTable] = {}
    by_source: dict[str, list[Mapping]] = {}
    for mapping in mappings:
        by_source.setdefault(mapping.source_system, []).append(mapping)
    for name, used in by_source.items():
        source = config.sources[name]
        with _source(source) as conn:
            for mapping in used:
                table = catalog.read_table(conn, _source_table_name(mapping, source))
                if table is not None:
                    found[mapping.name] = table
    return found


def _source_table_name(mapping: Mapping, source: SourceConfig) -> str:
    """The table of ``source.tables`` that ``mapping`` reads (its own name if none)."""
    for listed in source.tables:
        schema, _, table = listed.rpartition(".")
        if mapping.matches(schema or None, table) or mapping.matches("public", table):
            return listed
    return mapping.source_table


@contextmanager
def _source(source: SourceConfig) -> Iterator[Connection]:
    engine = sa.create_engine(source.url, poolclass=NullPool)
    try:
        with (
            source_errors.translated(source.url, f"source {source.name}", "reading the catalog"),
            engine.connect() as conn,
        ):
            yield conn
    finally:
        engine.dispose()


@contextmanager
def _engine(config: Config, name: str) -> Iterator[Engine]:
    url = config.databases[name].url
    backend = sa.engine.make_url(url).get_backend_name()
    try:
        speaks = target_dialect(backend)
    except PermanentApplyError as exc:  # not a target syncd supports, or its driver missing
        raise ConfigError([Problem(str(config.path), None, f"databases.{name}: {exc}")]) from exc
    engine: Engine = speaks.engine(url, config.apply.timeout_s)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _target(config: Config, name: str) -> Iterator[Connection]:
    with _engine(config, name) as engine, _translated(config, name), engine.connect() as conn:
        yield conn


@contextmanager
def _translated(config: Config, name: str) -> Iterator[None]:
    """Driver errors become TargetOutage (unreachable: exit 3) or SchemaRefused, by the
    driver's codes as the appliers decide them."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        reason = f"database {name}: {first_line(exc.orig or exc)}"
        backend = sa.engine.make_url(config.databases[name].url).get_backend_name()
        failure = target_dialect(backend).classify(exc.orig)
        if exc.connection_invalidated or failure is not Failure.PERMANENT:
            raise TargetOutage(reason) from exc
        raise SchemaRefused(reason) from exc


class SchemaRefused(SyncdError):
    """The target refused a statement (no rights, say): the message is the target's."""


def _dialect_name(backend: str) -> str:
    return "mysql" if backend in ("mysql", "mariadb") else backend
