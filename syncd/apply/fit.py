"""Whether a mapping's casts and ``set:`` values fit the target's column types (``syncd check``).

Pure: it takes the column types the target database reports (SQLAlchemy types) and says, in
words for a data team, what cannot fit — a ``type: date`` cast into an integer column, a
constant ``'EU'`` into a numeric one. Types it does not know are not judged: the target has
the last word when the row is written.
"""

from __future__ import annotations

from collections.abc import Mapping as Map
from typing import Any

import sqlalchemy as sa

from syncd.errors import MappingApplyError
from syncd.mapping import Mapping
from syncd.mapping.casts import cast

# What each cast gives, and the column kinds that take it.
_CAST_FITS = {
    "text": {"text"},
    "int": {"integer", "numeric", "float", "text"},
    "bigint": {"integer", "numeric", "float", "text"},
    "numeric": {"numeric", "float", "text"},
    "float": {"float", "numeric", "text"},
    "bool": {"bool", "integer", "text"},  # MySQL's BOOLEAN is TINYINT(1)
    "date": {"date", "timestamp", "text"},
    "timestamp": {"timestamp", "text"},
    "json": {"json", "text"},
}
# `set: {from: …}` metadata, as casts of the same kind.
_METADATA_KIND = {
    "source_system": "text",
    "source_table": "text",
    "op": "text",
    "position": "bigint",
    "commit_time": "timestamp",
}
# A column kind, and the cast that checks a constant for it.
_CHECK_CONSTANT = {
    "integer": "bigint",
    "numeric": "numeric",
    "float": "float",
    "bool": "bool",
    "date": "date",
    "timestamp": "timestamp",
}


def column_kind(column_type: Any) -> str | None:
    """The kind of a target column's type, or None for one not judged here."""
    checks: tuple[tuple[type[Any], str], ...] = (
        (sa.Boolean, "bool"),
        (sa.Integer, "integer"),
        (sa.Float, "float"),
        (sa.Numeric, "numeric"),
        (sa.DateTime, "timestamp"),
        (sa.Date, "date"),
        (sa.JSON, "json"),
        (sa.String, "text"),
    )
    for kind_type, kind in checks:
        if isinstance(column_type, kind_type):
            return kind
    name = type(column_type).__name__.upper()
    return "json" if name in ("JSON", "JSONB") else None


def misfits(mapping: Mapping, column_types: Map[str, Any]) -> list[str]:
    """Every cast and ``set:`` value of ``mapping`` that its target columns cannot take."""
    kinds = {name: column_kind(t) for name, t in column_types.items()}
    found: list[str] = []
    for column in mapping.columns or ():
        kind = kinds.get(column.target)
        if column.cast and kind and kind not in _CAST_FITS[column.cast]:
            found.append(
                f"columns.{column.source}: type: {column.cast} cannot fill "
                f"{column.target} ({kind} column); cast to one of {_casts_for(kind)}"
            )
    for setting in mapping.set_columns:
        kind = kinds.get(setting.target)
        if kind is None:
            continue
        if setting.metadata:
            gives = _METADATA_KIND[setting.metadata]
            if kind not in _CAST_FITS[gives]:
                found.append(
                    f"set.{setting.target}: {{from: {setting.metadata}}} gives {gives}, which "
                    f"cannot fill {setting.target} ({kind} column)"
                )
        elif (problem := _constant_misfit(setting.constant, kind)) is not None:
            found.append(f"set.{setting.target}: {problem}")
    return found


def _constant_misfit(value: Any, kind: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) and kind not in ("bool", "integer", "text"):
        return f"the boolean {str(value).lower()} cannot fill a {kind} column"
    if kind == "json" or kind not in _CHECK_CONSTANT:
        return None
    try:
        cast(_CHECK_CONSTANT[kind], value)
    except MappingApplyError as exc:
        return f"{exc} (the column is {kind})"
    return None


def _casts_for(kind: str) -> str:
    return ", ".join(name for name, fits in _CAST_FITS.items() if kind in fits) or "none"
