"""Routing: which mappings consume an event, and the keyed changes it means for each of them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from syncd.change import TABLE_KEY, Change, NewColumn, key_text
from syncd.errors import MappingApplyError, NoMappingError
from syncd.events import ChangeEvent
from syncd.mapping import Mapping
from syncd.schema.debezium import declared_types
from syncd.values import TargetLimits, check_change, printable

_CACHE_MAX = 10_000  # (system, schema, table) lookups remembered


class Router:
    """Finds an event's mappings (several, for fan-out) and turns the event into changes."""

    def __init__(
        self,
        mappings: Sequence[Mapping],
        target_columns: Callable[[Mapping], frozenset[str]] | None = None,
        target_limits: Callable[[Mapping], TargetLimits] | None = None,
        check_row: Callable[[Mapping, str, dict[str, Any]], None] | None = None,
    ):
        """``target_columns`` and ``target_limits``: what each mapping's target table has and
        holds, as its applier reflected it; without them rows are not checked against it.
        ``check_row(mapping, key text, target row)`` raises MappingApplyError for a row the
        target cannot hold; asked only of events with NaN or ±Infinity in them."""
        self._by_system: dict[str, list[Mapping]] = defaultdict(list)
        for mapping in mappings:
            self._by_system[mapping.source_system].append(mapping)
        self._target_columns = target_columns
        self._target_limits = target_limits
        # By mapping name: each table's limits as reflected with that set of its columns.
        self._limits_of: dict[str, tuple[frozenset[str] | None, TargetLimits]] = {}
        self._check_row = check_row
        self._cache: dict[tuple[str, str | None, str], list[Mapping]] = {}

    @property
    def mapping_count(self) -> int:
        return sum(len(mappings) for mappings in self._by_system.values())

    @property
    def systems(self) -> list[str]:
        return sorted(self._by_system)

    def mappings_for(self, event: ChangeEvent) -> list[Mapping]:
        """The mappings that consume the event; NoMappingError if there are none."""
        lookup = (event.system, event.schema, event.table)
        found = self._cache.get(lookup)
        if found is None:
            found = [m for m in self._by_system.get(event.system, []) if m.matches(*lookup[1:])]
            if len(self._cache) < _CACHE_MAX:  # a stream of made-up table names stays bounded
                self._cache[lookup] = found
        if not found:
            raise NoMappingError(
                f"no mapping for source system {event.system!r}, table {event.qualified_table!r}"
            )
        return found

    def changes_for(self, event: ChangeEvent) -> list[Change]:
        """Every change the event makes, across its mappings (in the order of the mappings)."""
        changes: list[Change] = []
        for mapping in self.mappings_for(event):
            changes += self.changes_of(mapping, event)
        return changes

    def changes_of(self, mapping: Mapping, event: ChangeEvent) -> list[Change]:
        """The changes the event makes through one of its mappings.

        An update that changes the key also deletes the row under the old key, at the same
        position, so the old row does not linger in the target.
        """
        if event.op == "t":
            return [self._truncate(mapping, event)]
        row = event.before if event.is_delete else event.after
        assert row is not None  # decode_event guarantees the row an op needs
        # A row the filter keeps out leaves the target as a delete would (per on_delete): it
        # may have been in it before this change. A delete passes as it is: deleting a row the
        # filter kept out changes nothing, and its before-image may lack the columns.
        delete = event.is_delete or not mapping.keeps(row)
        if delete and not event.is_delete:
            # Kept out, but its values are still checked: a value that cannot be cast
            # dead-letters the event whether the filter lets the row in or not.
            mapping.target_row(row, event)
        if not _changes_key(mapping, event):
            return [self._change(mapping, event, row, delete)]
        assert event.before is not None
        moved = self._change(mapping, event, event.before, True)
        change = self._change(mapping, event, row, delete)
        change.moved_from = moved  # columns the event lacks come from the old row
        return [moved, change]

    def _limits(self, mapping: Mapping) -> TargetLimits | None:
        if self._target_limits is None:
            return None
        # Asked again once the table's columns changed (on_new_column: add): the applier
        # reflects a table anew, and the new set of columns says so.
        columns = self._target_columns(mapping) if self._target_columns else None
        cached = self._limits_of.get(mapping.name)
        if cached is None or cached[0] is not columns:
            cached = self._limits_of[mapping.name] = (columns, self._target_limits(mapping))
        return cached[1]

    @staticmethod
    def _truncate(mapping: Mapping, event: ChangeEvent) -> Change:
        return Change(mapping, TABLE_KEY, {}, event.position, True, None, event)

    def _change(
        self, mapping: Mapping, event: ChangeEvent, row: dict[str, Any], delete: bool
    ) -> Change:
        key = key_text(mapping.key_of(row))
        target_row = mapping.key_row(row) if delete else mapping.target_row(row, event)
        missing_key = [k for k in mapping.target_key if k not in target_row]
        if missing_key:
            raise MappingApplyError(
                f"mapping {mapping.name}: key column(s) {', '.join(missing_key)} "
                "missing from the row"
            )
        new_columns = None
        if self._target_columns is not None and not delete:
            unknown = sorted(set(target_row) - self._target_columns(mapping))
            if unknown:
                new_columns = self._new_columns(mapping, event, key, unknown, target_row)
        check_change(self._limits(mapping), mapping, event, key, None if delete else target_row)
        if event.non_finite and self._check_row is not None and not delete:
            self._check_row(mapping, key, target_row)
        unavailable = () if delete else _mapped(mapping, event.unavailable)
        return Change(
            mapping=mapping,
            key=key,
            target_key={k: target_row[k] for k in mapping.target_key},
            position=event.position,
            delete=delete,
            row=None if delete else target_row,
            event=event,
            unavailable=unavailable,
            new_columns=new_columns,
        )

    def _new_columns(
        self,
        mapping: Mapping,
        event: ChangeEvent,
        key: str,
        unknown: list[str],
        target_row: dict[str, Any],
    ) -> dict[str, NewColumn] | None:
        """Columns of the row the target lacks, per the mapping's on_new_column: the ones to
        add (the applier adds them first), or none — left out ("ignore") — or
        MappingApplyError ("dead-letter", and a name the target could not hold)."""
        limits = self._limits(mapping)
        odd = [name for name in unknown if limits and limits.identifier_problem(name)]
        if mapping.on_new_column == "dead-letter" or odd:
            raise MappingApplyError(_unknown_columns(mapping, key, odd or unknown, limits))
        if mapping.on_new_column == "ignore":
            for name in unknown:
                del target_row[name]
            return None
        types, dialect = event.types, event.types_dialect
        if types is None:
            types, dialect = declared_types(event.raw), "postgresql"  # a Debezium schema
        undeclared = [name for name in unknown if name not in types]
        if undeclared and not mapping.on_new_column_given:
            raise MappingApplyError(_unknown_columns(mapping, key, undeclared, limits))
        return {name: NewColumn(types.get(name), dialect, target_row[name]) for name in unknown}


def _unknown_columns(
    mapping: Mapping, key: str, unknown: list[str], limits: TargetLimits | None
) -> str:
    why = [p for name in unknown if limits and (p := limits.identifier_problem(name))]
    names = ", ".join(printable(name, 80) for name in unknown)
    return (
        f"mapping {mapping.name} key {printable(key, 200)}: {mapping.target_database}."
        f"{mapping.target_table} has no column {names}"
        + (f" (a name that {why[0]})" if why else "")
        + (
            "; map the source column in the mapping's columns (or add the column to the table)"
            if mapping.columns is not None or why
            else "; add the column to the table (syncd schema --apply), or set on_new_column: "
            f"add{_why_not_added(mapping)}"
        )
    )


def _why_not_added(mapping: Mapping) -> str:
    if mapping.on_new_column == "dead-letter":
        return " (it is dead-letter)"
    if not mapping.on_new_column_given:
        return (
            " (by default a column is added only when the event declares its type: "
            "source.types, as syncd's captures send, or a Debezium schema)"
        )
    return ""


def _mapped(mapping: Mapping, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The target columns these source columns feed."""
    if not columns or mapping.columns is None:
        return columns
    return tuple(c.target for c in mapping.columns if c.source in columns)


def _changes_key(mapping: Mapping, event: ChangeEvent) -> bool:
    """An update whose before-image names a different key than its after-image."""
    before, after = event.before, event.after
    if event.op != "u" or not before or not after:
        return False
    changed = False
    for column in mapping.key:
        old = before.get(column)
        if old is None:
            return False  # a partial before-image without the key tells nothing
        changed = changed or old != after.get(column)
    return changed
