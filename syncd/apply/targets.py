"""A mapping's target table as the database describes it, checked against the mapping.

Read once when an applier is prepared (and by ``syncd check``): missing tables and columns,
casts the column types cannot take, no unique key for the upsert — each a problem naming the
mapping's file and line and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from syncd.apply.fit import misfits
from syncd.apply.positions import split_table_name
from syncd.errors import Problem
from syncd.mapping import Mapping
from syncd.values import TargetLimits


@dataclass(frozen=True)
class Target:
    """A mapping's target table as the database describes it."""

    table: sa.TableClause
    columns: frozenset[str]
    key: tuple[str, ...]
    limits: TargetLimits  # what its columns hold: checked when events are routed
    types: dict[str, Any]  # column -> its SQLAlchemy type, as reflected


def describe(
    inspector: sa.Inspector,
    database: str,
    backend: str,
    mapping: Mapping,
    problems: list[Problem],
) -> Target | None:
    """``mapping``'s target table in ``database``; what does not fit goes in ``problems``.

    None if the table does not exist.
    """
    schema, name = split_table_name(mapping.target_table)
    where = f"{database}.{mapping.target_table}"

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
    if not _has_unique_key(inspector, name, schema, set(mapping.target_key)):
        problem(
            f"{where} has no primary key or unique index on ({', '.join(mapping.target_key)}); "
            "upserts need one: add it, or change the mapping's key"
        )
    table = sa.table(name, *(sa.column(c) for c in columns), schema=schema)
    limits = TargetLimits.reflected(backend, reflected)
    types = {c["name"]: c["type"] for c in reflected}
    return Target(table, frozenset(present), mapping.target_key, limits, types)


def _has_unique_key(inspector: sa.Inspector, name: str, schema: str | None, key: set[str]) -> bool:
    if set(inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]) == key:
        return True
    uniques: list[list[str | None]] = [
        list(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema)
    ]
    indexes = inspector.get_indexes(name, schema=schema)
    uniques += [list(i["column_names"]) for i in indexes if i["unique"]]
    return any(set(cols) == key for cols in uniques)
