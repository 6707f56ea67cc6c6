"""A mapping as the data path uses it: which events it takes and the target row it makes.

``Mapping.target_row`` is the whole of a mapping's say over a row: columns renamed (or every
column but ``exclude``), each through its transforms and cast, then the ``set:`` columns —
constants and event metadata. ``Mapping.where`` decides whether a row belongs in the target.
"""

from __future__ import annotations

import collections.abc as abc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from syncd.errors import MappingApplyError
from syncd.mapping.casts import cast
from syncd.mapping.transforms import apply_transforms
from syncd.mapping.where import Where

if TYPE_CHECKING:
    from syncd.events import ChangeEvent

Row = abc.Mapping[str, Any]


@dataclass(frozen=True)
class ColumnMap:
    source: str
    target: str
    transforms: tuple[str, ...] = ()  # names of syncd.mapping.transforms.TRANSFORMS, in order
    cast: str | None = None  # a key of syncd.mapping.casts.CASTS, applied after the transforms

    @property
    def plain(self) -> bool:
        return not self.transforms and self.cast is None


def _commit_time(event: ChangeEvent) -> str | None:
    if event.source_ts_ms is None:
        return None
    return datetime.fromtimestamp(event.source_ts_ms / 1000, UTC).isoformat(sep=" ")


# `set: {COLUMN: {from: NAME}}`: what each name takes from the event.
METADATA: dict[str, Callable[[ChangeEvent], Any]] = {
    "source_system": lambda event: event.system,
    "source_table": lambda event: event.qualified_table,
    "position": lambda event: event.position,
    "op": lambda event: event.op,
    "commit_time": _commit_time,  # source.ts_ms as UTC ISO 8601 text; null without it
}


@dataclass(frozen=True)
class SetColumn:
    """A target column no source column feeds: a constant, or ``from`` event metadata."""

    target: str
    constant: Any = None
    metadata: str | None = None  # a key of METADATA

    def value(self, event: ChangeEvent) -> Any:
        return METADATA[self.metadata](event) if self.metadata else self.constant


@dataclass(frozen=True)
class OnDelete:
    action: Literal["delete", "ignore", "soft"]
    soft_column: str | None = None  # set (for "soft") instead of deleting the row


@dataclass(frozen=True)
class Mapping:
    """One source table feeding one target table."""

    name: str
    source_system: str
    source_table: str  # as written: "public.customers" or "customers"
    target_database: str
    target_table: str  # as written, may be "schema.table"
    key: tuple[str, ...]  # source column names
    columns: tuple[ColumnMap, ...] | None  # None: every source column (but `exclude`), same name
    on_delete: OnDelete
    file: str  # path as given, for messages
    line: int  # line of the mapping's "- name:" item
    where: Where | None = None  # rows that fail it are kept out (and removed when they leave)
    exclude: frozenset[str] = frozenset()  # with `columns` None: source columns left out
    set_columns: tuple[SetColumn, ...] = ()
    # A column the mapping writes that the target table lacks: "add" it (ALTER TABLE,
    # syncd.apply.evolve), "ignore" it (left out of the row) or "dead-letter" the event. The
    # reader's default is "add" with `columns` omitted (a mirror gains the source's new
    # columns) and "dead-letter" with a `columns:` list, as before (a source column not listed
    # is left out whatever this says).
    on_new_column: Literal["add", "ignore", "dead-letter"] = "dead-letter"
    # Written in the file. The default "add" adds only columns whose type the event declares
    # (captures' source.types, a Debezium schema): a published event's stray column (a typo,
    # hostile input) is dead-lettered, as without on_new_column, instead of growing the table.
    on_new_column_given: bool = False

    @cached_property
    def target_key(self) -> tuple[str, ...]:
        """The key columns as they are named in the target table."""
        if self.columns is None:
            return self.key
        renamed = {c.source: c.target for c in self.columns}
        return tuple(renamed.get(column, column) for column in self.key)

    def matches(self, schema: str | None, table: str) -> bool:
        """Whether an event from ``schema.table`` is for this mapping.

        A mapping written as "public.customers" takes only schema "public" (an event without a
        schema does not match it); one written as "customers" takes table customers of any schema.
        """
        wanted_schema, _, wanted_table = self.source_table.rpartition(".")
        return wanted_table == table and (not wanted_schema or wanted_schema == schema)

    def key_of(self, row: Row) -> tuple[Any, ...]:
        """The source key values of ``row``, in ``key`` order."""
        values = tuple([row.get(column) for column in self.key])
        if None in values:
            missing = [column for column in self.key if row.get(column) is None]
            raise MappingApplyError(
                f"mapping '{self.name}': the row has no value for key column(s) "
                f"{', '.join(missing)}"
            )
        return values

    def keeps(self, row: Row) -> bool:
        """Whether ``row`` passes ``where`` (no filter: every row). Raises MappingApplyError."""
        if self.where is None:
            return True
        try:
            return self.where.matches(row)
        except MappingApplyError as exc:
            raise MappingApplyError(f"mapping '{self.name}': {exc}") from exc

    def to_target_row(self, row: Row) -> dict[str, Any]:
        """``row`` renamed, transformed and cast for the target table (no ``set:`` columns).

        With ``columns`` given, only the listed source columns that ``row`` has are carried over:
        a partial row (an update that sends only what changed) stays partial.
        """
        if self.columns is None:
            if not self.exclude:
                return dict(row)
            return {k: v for k, v in row.items() if k not in self.exclude}
        target: dict[str, Any] = {}
        for column in self.columns:
            if column.source in row:
                value = row[column.source]
                target[column.target] = value if column.plain else self._shape(column, value)
        return target

    def key_row(self, row: Row) -> dict[str, Any]:
        """Only the key columns of :meth:`to_target_row`: all a delete writes by."""
        if self.columns is None:
            return {column: row[column] for column in self.key if column in row}
        return {
            c.target: row[c.source] if c.plain else self._shape(c, row[c.source])
            for c in self.columns
            if c.source in self.key and c.source in row
        }

    def target_row(self, row: Row, event: ChangeEvent) -> dict[str, Any]:
        """The row as it is written: :meth:`to_target_row` and the ``set:`` columns."""
        target = self.to_target_row(row)
        for column in self.set_columns:
            target[column.target] = column.value(event)
        return target

    def _shape(self, column: ColumnMap, value: Any) -> Any:
        try:
            value = apply_transforms(column.transforms, value)
            return cast(column.cast, value) if column.cast else value
        except MappingApplyError as exc:
            raise MappingApplyError(
                f"mapping '{self.name}': column {column.source}: {exc}"
            ) from exc
