"""Routing: which mappings consume an event, and the keyed changes it means for each of them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from syncd.apply.plan import TABLE_KEY, Change, key_text
from syncd.errors import MappingApplyError, NoMappingError
from syncd.events import ChangeEvent
from syncd.mapping import Mapping


class Router:
    """Finds an event's mappings (several, for fan-out) and turns the event into changes."""

    def __init__(
        self,
        mappings: Sequence[Mapping],
        target_columns: Callable[[Mapping], frozenset[str]] | None = None,
        check_row: Callable[[Mapping, str, dict[str, Any]], None] | None = None,
    ):
        """``check_row(mapping, key text, target row)`` raises MappingApplyError for a row the
        target cannot hold; asked only of events with NaN or ±Infinity in them."""
        self._by_system: dict[str, list[Mapping]] = defaultdict(list)
        for mapping in mappings:
            self._by_system[mapping.source_system].append(mapping)
        self._target_columns = target_columns
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
            self._cache[lookup] = found
        if not found:
            raise NoMappingError(
                f"no mapping for source system {event.system!r}, table {event.qualified_table!r}"
            )
        return found

    def changes_for(self, event: ChangeEvent, ref: Any = None) -> list[Change]:
        """Every change the event makes, across its mappings.

        An update that changes the key also deletes the row under the old key, at the same
        position, so the old row does not linger in the target.
        """
        if event.op == "t":
            return [self._truncate(mapping, event, ref) for mapping in self.mappings_for(event)]
        changes = []
        for mapping in self.mappings_for(event):
            row = event.before if event.is_delete else event.after
            assert row is not None  # decode_event guarantees the row an op needs
            if _changes_key(mapping, event):
                assert event.before is not None
                moved = self._change(mapping, event, event.before, True, ref)
                changes.append(moved)
                change = self._change(mapping, event, row, False, ref)
                change.moved_from = moved  # columns the event lacks come from the old row
                changes.append(change)
            else:
                changes.append(self._change(mapping, event, row, event.is_delete, ref))
        return changes

    @staticmethod
    def _truncate(mapping: Mapping, event: ChangeEvent, ref: Any) -> Change:
        return Change(mapping, TABLE_KEY, {}, event.position, True, None, event, ref)

    def _change(
        self, mapping: Mapping, event: ChangeEvent, row: dict[str, Any], delete: bool, ref: Any
    ) -> Change:
        key = key_text(mapping.key_of(row))
        target_row = mapping.to_target_row(row)
        missing_key = [k for k in mapping.target_key if k not in target_row]
        if missing_key:
            raise MappingApplyError(
                f"mapping {mapping.name}: key column(s) {', '.join(missing_key)} "
                "missing from the row"
            )
        if self._target_columns is not None and not delete:
            unknown = sorted(set(target_row) - self._target_columns(mapping))
            if unknown:
                raise MappingApplyError(
                    f"mapping {mapping.name} key {key}: {mapping.target_database}."
                    f"{mapping.target_table} has no column {', '.join(unknown)}; map the source "
                    "column in the mapping's columns (or add the column to the table)"
                )
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
            ref=ref,
            unavailable=unavailable,
        )


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
