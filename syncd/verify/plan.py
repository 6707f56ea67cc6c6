"""What ``syncd verify`` compares for one mapping, and the SQL that makes each side's rows.

Both sides are reduced to the same thing: per row, the JSON text of its key (``key_text``) and
the JSON text of its key and compared columns (``row_text``; a chunk is digested by the sum of
its rows' 64-bit hashes, a row by its md5), every value in the
*target* column's type — the source column is cast to it where the types differ, as the
target would have cast what the event carried. ``json_build_array`` spells each type one way
whatever the database, once both sessions agree on the time zone and styles
(:data:`SESSION_OPTIONS`); numerics go through ``trim_scale`` so that ``1.10`` in a
``numeric(10,2)`` equals ``1.1`` in a ``numeric``.

A mapping made only of renames (and ``exclude``, and ``set:`` constants) is hashed in both
databases (``in_sql``): no row travels to Python unless its chunk differs. A mapping with
transforms, casts or a ``where`` filter is mapped by the mapping's own code — exactly what the
daemon does — so its source rows are read in Python, as the capture reads them, and the rows
they should become are hashed inside the target database, through the target's own column
types (``json_populate_recordset``, as the applier writes them).

Not compared: ``set:`` columns fed from event metadata (a position or commit time no row
holds), the soft-delete column (a soft-deleted target row counts as absent), and columns one
side lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd import jsonvalue
from syncd.capture.logical_setup import parse_table
from syncd.config import SourceConfig
from syncd.errors import ConfigError, Problem
from syncd.mapping import Mapping

ALIAS = "syncd_row"  # the table's alias in every query (the snapshot's, whose SQL is reused)
# libpq options of every verify session: the same text for the same value on both sides.
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=1"
)
_ARGUMENTS_PER_ARRAY = 90  # json_build_array takes at most 100 arguments

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation <> 0
FROM pg_attribute a
WHERE a.attrelid = to_regclass(:name) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@dataclass(frozen=True, slots=True)
class Column:
    """A column as its table's catalog describes it."""

    name: str
    type: str  # format_type(): "numeric(10,2)", "text", "timestamp with time zone"
    collatable: bool


@dataclass(frozen=True, slots=True)
class Compared:
    """One target column verify compares, and what feeds it on the source side."""

    target: Column
    source: Column | None  # None: a `set:` constant
    constant: Any = None


@dataclass(frozen=True)
class Plan:
    """Everything verify needs to compare one mapping's source table with its target table."""

    mapping: Mapping
    source: SourceConfig
    source_schema: str
    source_table: str
    target_table: str  # quoted, maybe schema-qualified
    key: tuple[Compared, ...]  # in the mapping's key order
    columns: tuple[Compared, ...]  # the other compared columns
    soft_column: str | None  # quoted; a row with it set is absent
    counts_extra: bool  # False for on_delete: ignore, which keeps rows the source deleted
    in_sql: bool  # both sides hashed in SQL (no transform, cast or filter)
    quote: Any

    @property
    def source_name(self) -> str:
        return f"{self.quote(self.source_schema)}.{self.quote(self.source_table)}"

    @property
    def qualified_source(self) -> str:
        return f"{self.source_schema}.{self.source_table}"

    # -- the target side -------------------------------------------------------------------

    def target_key_text(self) -> str:
        return _array(self._canonical_target(c) for c in self.key)

    def target_row_text(self) -> str:
        return _array(self._canonical_target(c) for c in self.key + self.columns)

    def target_order(self) -> list[str]:
        return [_ordered(f"{ALIAS}.{self.quote(c.target.name)}", c.target) for c in self.key]

    def target_present(self) -> str:
        """The condition of a target row that counts as present (not soft-deleted)."""
        return "true" if self.soft_column is None else f"{ALIAS}.{self.soft_column} IS NULL"

    def target_key_types(self) -> list[str]:
        return [c.target.type for c in self.key]

    def expected_select(self) -> str:
        """The select list that reads expected rows from json_populate_recordset: each column
        as the applier reads it (a JSON string for a json column is the document's text)."""
        return ", ".join(
            f"{_json_document(f'{ALIAS}.{self.quote(c.target.name)}', c.target.type)}"
            f" AS {self.quote(c.target.name)}"
            for c in self.key + self.columns
        )

    def expected_row(self, target_row: dict[str, Any]) -> dict[str, Any]:
        """A mapped row (``Mapping.to_target_row``) with the ``set:`` constants, compared
        columns only."""
        row = {}
        for compared in self.key + self.columns:
            name = compared.target.name
            if compared.source is None:
                row[name] = compared.constant
            elif name in target_row:
                row[name] = target_row[name]
        return row

    # -- the source side (in_sql plans) ----------------------------------------------------

    def source_key_text(self) -> str:
        return _array(self._canonical_source(c) for c in self.key)

    def source_row_text(self) -> str:
        return _array(self._canonical_source(c) for c in self.key + self.columns)

    def source_order(self) -> list[str]:
        return [
            _ordered(f"{ALIAS}.{self.quote(c.source.name)}", c.source)
            for c in self.key
            if c.source is not None
        ]

    def source_keys(self) -> str:
        """The source's key columns, plain: for looking keys up (``IN``)."""
        return ", ".join(f"{ALIAS}.{self.quote(c.source.name)}" for c in self.key if c.source)

    def target_keys(self) -> str:
        return ", ".join(f"{ALIAS}.{self.quote(c.target.name)}" for c in self.key)

    def source_key_types(self) -> list[str]:
        return [c.source.type for c in self.key if c.source is not None]

    def _canonical_source(self, compared: Compared) -> str:
        target_type = compared.target.type
        if compared.source is None:
            value = _literal(compared.constant)
            expression = f"CAST({value} AS {target_type})"
        else:
            expression = f"{ALIAS}.{self.quote(compared.source.name)}"
            if compared.source.type != target_type:
                expression = f"CAST({expression} AS {target_type})"
        return _canonical(expression, target_type)

    def _canonical_target(self, compared: Compared) -> str:
        column = compared.target
        return _canonical(f"{ALIAS}.{self.quote(column.name)}", column.type)


def build_plan(
    mapping: Mapping, source: SourceConfig, source_conn: Connection, target_conn: Connection
) -> Plan:
    """The plan for ``mapping``; ``ConfigError`` (naming the mapping's file and line) when
    verify cannot follow it."""
    schema, table = _source_table(mapping, source)
    source_columns = table_columns(source_conn, schema, table)
    if not source_columns:
        _refuse(mapping, f"source table {schema}.{table} does not exist in source {source.name}")
    target_schema, _, target_name = mapping.target_table.rpartition(".")
    target_columns = table_columns(target_conn, target_schema, target_name)
    if not target_columns:
        _refuse(mapping, f"target table {mapping.target_table} does not exist")
    compared = _compared(mapping, source_columns, target_columns)
    soft = mapping.on_delete.soft_column if mapping.on_delete.action == "soft" else None
    key_targets = set(mapping.target_key)
    quote = source_conn.dialect.identifier_preparer.quote
    key = []
    for target_name_ in mapping.target_key:
        found = [c for c in compared if c.target.name == target_name_]
        if not found or found[0].source is None:
            _refuse(mapping, f"key column {target_name_} is missing from a table")
        key.append(found[0])
    others = tuple(
        c for c in compared if c.target.name not in key_targets and c.target.name != soft
    )
    plain = all(column.plain for column in mapping.columns or ())
    return Plan(
        mapping=mapping,
        source=source,
        source_schema=schema,
        source_table=table,
        target_table=_quoted_table(mapping.target_table, quote),
        key=tuple(key),
        columns=others,
        soft_column=None if soft is None else quote(soft),
        counts_extra=mapping.on_delete.action != "ignore",
        in_sql=plain and mapping.where is None,
        quote=quote,
    )


def table_columns(conn: Connection, schema: str, table: str) -> dict[str, Column]:
    """The columns of ``schema.table`` (``schema`` "" : by the search path), in table order;
    empty if there is no such table."""
    quote = conn.dialect.identifier_preparer.quote_identifier  # always quoted: exact case
    name = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
    rows = conn.execute(sa.text(_COLUMNS), {"name": name}).all()
    return {row[0]: Column(row[0], row[1], bool(row[2])) for row in rows}


def _source_table(mapping: Mapping, source: SourceConfig) -> tuple[str, str]:
    for listed in source.tables:
        schema, table = parse_table(listed)
        if mapping.matches(schema, table):
            return schema, table
    return _refuse(
        mapping,
        f"source {source.name} does not capture {mapping.source_table} (its tables: "
        f"{', '.join(source.tables)}); add it to sources.{source.name}.tables in config.yaml",
    )


def _compared(
    mapping: Mapping, source: dict[str, Column], target: dict[str, Column]
) -> list[Compared]:
    key = set(mapping.key)
    for column in mapping.columns or ():
        if column.source in key and not column.plain:
            _refuse(
                mapping,
                f"key column {column.source} has a transform or cast: verify follows keys "
                "only through renames",
            )
    pairs: list[tuple[str, str]]
    if mapping.columns is None:
        pairs = [(name, name) for name in source if name not in mapping.exclude]
    else:
        pairs = [(c.source, c.target) for c in mapping.columns]
        listed = {c.source for c in mapping.columns}
        pairs += [(name, name) for name in mapping.key if name not in listed]
    compared = [
        Compared(target[to], source[of]) for of, to in pairs if of in source and to in target
    ]
    compared += [
        Compared(target[column.target], None, column.constant)
        for column in mapping.set_columns
        if column.metadata is None and column.target in target
    ]
    return compared


def _refuse(mapping: Mapping, message: str) -> NoReturn:
    raise ConfigError([Problem(mapping.file, mapping.line, f"mapping '{mapping.name}': {message}")])


def _quoted_table(name: str, quote: Any) -> str:
    schema, _, table = name.rpartition(".")
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def _canonical(expression: str, type_name: str) -> str:
    # 1.10 and 1.1 are the same number; numeric(10,2) and numeric spell it differently.
    if type_name.startswith("numeric"):
        return f"trim_scale({expression})"
    return expression


def _ordered(expression: str, column: Column) -> str:
    # Both databases must walk the keys in one order, whatever their default collations.
    return f'{expression} COLLATE "C"' if column.collatable else expression


def _array(expressions: Iterable[str]) -> str:
    """``json_build_array(…)::text`` of ``expressions``, nested past its argument limit."""
    items = list(expressions)
    if len(items) > _ARGUMENTS_PER_ARRAY:
        groups = [
            items[i : i + _ARGUMENTS_PER_ARRAY] for i in range(0, len(items), _ARGUMENTS_PER_ARRAY)
        ]
        items = [f"json_build_array({', '.join(group)})" for group in groups]
    return f"json_build_array({', '.join(items)})::text"


def _literal(value: Any) -> str:
    """A `set:` constant (text, number, boolean or null from YAML) as an SQL literal."""
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else jsonvalue.dumps(value)
    # standard_conforming_strings (PostgreSQL's default since 9.1): only quotes need doubling.
    return "'" + text.replace("'", "''") + "'"


def _json_document(expression: str, type_name: str) -> str:
    """As the applier reads a json/jsonb column from json_populate_recordset."""
    if type_name in ("json", "jsonb"):
        typeof = f"{type_name}_typeof"
        return (
            f"CASE WHEN {typeof}({expression}) = 'string' "
            f"THEN ({expression} #>> '{{}}')::{type_name} ELSE {expression} END"
        )
    return expression


def bounds(types: Sequence[str], parameter: str) -> str:
    """The key held as a JSON array in ``:parameter``, cast to ``types``, as a row value."""
    return ", ".join(
        f"CAST(CAST(:{parameter} AS json) ->> {i} AS {type_name})"
        for i, type_name in enumerate(types)
    )


def keys_list(types: Sequence[str]) -> str:
    """The keys held as a JSON array of JSON arrays in ``:keys``, as rows of ``types``."""
    columns = ", ".join(f"CAST(k ->> {i} AS {t})" for i, t in enumerate(types))
    return f"SELECT {columns} FROM json_array_elements(CAST(:keys AS json)) AS k"
