"""From a mapping and its source table to the target table it needs, and the DDL to get there.

:func:`wanted_table` takes a mapping through its source table: every column (``columns``
omitted, but ``exclude``) or the listed ones under their target names, each typed by the
type table from the source's declared type — or by its cast (``type:``), or as text after a
transform that makes text; the ``set:`` columns by their constant or metadata; the
soft-delete column as a timestamp; the key's target columns NOT NULL and the primary key.
:func:`changes_for` compares that with the target as it is: a missing table is created, a
missing column added; a column of another type is a warning, never altered — syncd drops and
narrows nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import UserDefinedType

from syncd.apply.evolve import add_column_statement
from syncd.apply.positions import positions_table, split_table_name
from syncd.mapping import ColumnMap, Mapping
from syncd.schema import catalog
from syncd.schema.catalog import SourceTable
from syncd.schema.types import (
    METADATA_TYPES,
    SOFT_DELETE_TYPE,
    NoSafeType,
    cast_type,
    constant_type,
    parse,
    target_type,
)

# Transforms whose result is the source's text again (same kind, length at most the same).
_TEXT_KEEPING = {"lower", "upper", "trim", "nullif_empty"}


@dataclass(frozen=True)
class WantedColumn:
    name: str
    type: str  # the target's DDL type
    key: bool = False


@dataclass
class WantedTable:
    """A target table as its mappings need it."""

    database: str
    table: str  # as the mappings write it
    dialect: str  # the target's: postgresql | sqlite | mysql
    key: tuple[str, ...]
    columns: dict[str, WantedColumn] = field(default_factory=dict)
    mappings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Statement:
    """One DDL statement: what it does to which table, and its SQL."""

    change: str  # create_table | add_column (the label of syncd_schema_changes_total)
    table: str  # as the mappings write it
    sql: str
    column: str | None = None  # add_column: the column and its type
    column_type: str | None = None

    @property
    def what(self) -> str:
        if self.change == "add_column":
            return f"add column {self.column} to {self.table}"
        return f"create {self.table}"


@dataclass
class Changes:
    """What one target database needs: statements to run, and what stays odd."""

    statements: list[Statement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def wanted_columns(
    mapping: Mapping, source: SourceTable, dialect: str
) -> tuple[list[WantedColumn], list[str]]:
    """The target columns ``mapping`` writes, typed for ``dialect``; and the problems found
    (each a sentence saying what to write instead)."""
    problems: list[str] = []
    key_count = len(mapping.target_key)
    target_key = set(mapping.target_key)
    columns: list[WantedColumn] = []

    def add(name: str, source_type: str, source_dialect: str, why: str) -> None:
        is_key = name in target_key
        try:
            kind = target_type(source_type, source_dialect, dialect, key_count if is_key else 0)
        except NoSafeType as exc:
            problems.append(f"{why}: {exc}; {_instead(mapping, why)}")
            return
        columns.append(WantedColumn(name, kind, is_key))

    for source_column, target, source_type in _carried(mapping, source, problems):
        add(target, source_type, source.dialect, f"column {source_column} ({source_type})")
    for column in mapping.set_columns:
        if column.metadata:
            add(
                column.target, METADATA_TYPES[column.metadata], "postgresql", f"set.{column.target}"
            )
        else:
            add(column.target, constant_type(column.constant), "postgresql", f"set.{column.target}")
    if mapping.on_delete.soft_column:
        add(mapping.on_delete.soft_column, SOFT_DELETE_TYPE, "postgresql", "on_delete.soft")
    return columns, problems


def _carried(
    mapping: Mapping, source: SourceTable, problems: list[str]
) -> list[tuple[str, str, str]]:
    """(source column, target column, source-dialect type) of every column the mapping
    carries; a listed or key column the source lacks is a problem."""
    names = [c.name for c in source.columns]
    for key in mapping.key:
        if source.column(key) is None:
            problems.append(
                f"key column {key} is not a column of {source.qualified} "
                f"(it has: {', '.join(names)}); fix the mapping's key"
            )
    if mapping.columns is None:
        return [(c.name, c.name, c.type) for c in source.columns if c.name not in mapping.exclude]
    carried = []
    for column in mapping.columns:
        found = source.column(column.source)
        if found is None:
            problems.append(
                f"columns.{column.source} is not a column of {source.qualified} "
                f"(it has: {', '.join(names)}); fix the mapping's columns"
            )
            continue
        carried.append((column.source, column.target, _shaped_type(column, found.type)))
    return carried


def _shaped_type(column: ColumnMap, source_type: str) -> str:
    """The type of a column after its transforms and cast (PostgreSQL's words if changed)."""
    if column.cast:
        return cast_type(column.cast, parse(source_type))
    if column.transforms and not set(column.transforms) <= _TEXT_KEEPING:
        return "text"  # sha256, mask: text of their own length
    return source_type


def _instead(mapping: Mapping, why: str) -> str:
    if why.startswith("column ") and mapping.columns is None:
        name = why.split(" ")[1]
        return f"leave it out (exclude: [{name}]), or list the columns with a cast (type: text)"
    if why.startswith("column "):
        return "give it a cast (type: text or json), or create the target table yourself"
    return "create the target table yourself"


def merge(wanted: WantedTable, mapping: Mapping, columns: list[WantedColumn]) -> list[str]:
    """Add one mapping's columns to the table several mappings may share; the conflicts."""
    conflicts = []
    wanted.mappings.append(mapping.name)
    if tuple(mapping.target_key) != wanted.key:
        conflicts.append(
            f"mapping {mapping.name} keys {wanted.table} by ({', '.join(mapping.target_key)}), "
            f"mapping {wanted.mappings[0]} by ({', '.join(wanted.key)}): the first one's key "
            "is used"
        )
    for column in columns:
        known = wanted.columns.get(column.name)
        if known is None:
            wanted.columns[column.name] = column
        elif known.type != column.type:
            conflicts.append(
                f"mapping {mapping.name} wants {wanted.table}.{column.name} as {column.type}, "
                f"mapping {wanted.mappings[0]} as {known.type}: {known.type} is used"
            )
    return conflicts


# ----------------------------------------------------------------- against the target


class _Declared(UserDefinedType[Any]):
    """A column type rendered exactly as the type table wrote it."""

    cache_ok = True

    def __init__(self, text: str):
        self.text = text

    def get_col_spec(self, **_kw: Any) -> str:
        return self.text


def changes_for(conn: Connection, wanted: WantedTable) -> Changes:
    """What ``wanted`` needs of the target behind ``conn``: CREATE TABLE, or ADD COLUMN for
    each missing column; a column of another type is a warning."""
    changes = Changes()
    present = catalog.read_table(conn, wanted.table)
    if present is None:
        table = _table(wanted)
        changes.statements.append(Statement("create_table", wanted.table, _create(conn, table)))
        return changes
    for column in wanted.columns.values():
        found = present.column(column.name)
        if found is None:
            sql = add_column_statement(conn, wanted.table, column.name, column.type)
            changes.statements.append(
                Statement("add_column", wanted.table, sql, column.name, column.type)
            )
        elif not same_type(wanted.dialect, column.type, found.type):
            changes.warnings.append(
                f"{wanted.database}.{wanted.table}.{column.name} is {found.type}, where the "
                f"source wants {column.type}: syncd alters no column (ALTER it yourself if "
                "the values need it)"
            )
    if present.primary_key and set(present.primary_key) != set(wanted.key):
        changes.warnings.append(
            f"{wanted.database}.{wanted.table} has the primary key "
            f"({', '.join(present.primary_key)}), not the mappings' key "
            f"({', '.join(wanted.key)}): upserts need a unique key on the latter"
        )
    return changes


def positions_changes(conn: Connection, name: str) -> list[Statement]:
    """CREATE TABLE of the positions table, if the target lacks it."""
    table = positions_table(name)
    if sa.inspect(conn).has_table(table.name, schema=table.schema):
        return []
    return [Statement("create_table", name, _create(conn, table))]


def _create(conn: Connection, table: sa.Table) -> str:
    """CREATE TABLE IF NOT EXISTS, as the target's dialect writes it (names quoted by it)."""
    sql = str(CreateTable(table, if_not_exists=True).compile(dialect=conn.dialect))
    return "\n".join(line.rstrip() for line in sql.strip().splitlines())


def _table(wanted: WantedTable) -> sa.Table:
    schema, name = split_table_name(wanted.table)
    columns = [
        sa.Column(
            c.name,
            _Declared(c.type),
            primary_key=c.name in wanted.key,
            nullable=c.name not in wanted.key,
            autoincrement=False,
        )
        for c in wanted.columns.values()
    ]
    # MariaDB/MySQL: utf8mb4 holds every character (emoji too), and its binary collation
    # compares text as PostgreSQL does — keys that differ in case stay apart.
    return sa.Table(
        name,
        sa.MetaData(),
        *columns,
        schema=schema,
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def same_type(dialect: str, wanted: str, present: str) -> bool:
    """Whether a present column's type (as the target's catalog names it) is the wanted one."""
    return _canonical(dialect, wanted) == _canonical(dialect, present)


_MYSQL_INTEGERS = {"smallint", "int", "integer", "bigint", "mediumint"}
_MYSQL_ALIASES = {"integer": "int", "numeric": "decimal", "json": "longtext", "bool": "boolean"}


def _canonical(dialect: str, text: str) -> tuple[str, tuple[int, ...], bool]:
    sql = parse(text)
    if dialect != "mysql":
        return sql.name, sql.args, sql.array
    name = _MYSQL_ALIASES.get(sql.name, sql.name)
    if name == "boolean":
        return "tinyint", (1,), False
    if name in _MYSQL_INTEGERS:
        return name, (), False  # a display width is no part of the type
    if name in ("datetime", "time") and not sql.args:
        return name, (0,), False
    return name, sql.args, sql.array
