"""The pure half of verify: two sides' row hashes into differences, and how they are told.

A side is a mapping from key text (the JSON array of the key's values, as both databases spell
it) to the md5 of the row's compared columns. No database here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd import jsonvalue

SAMPLE_KEYS = 10  # sample keys shown per kind of difference
KINDS = ("missing", "extra", "different")


@dataclass
class Differences:
    """Keys (key texts) whose target row is missing, extra or different; ``compared`` counts
    the source rows looked at (those the mapping's filter keeps)."""

    compared: int = 0
    missing: set[str] = field(default_factory=set)
    extra: set[str] = field(default_factory=set)
    different: set[str] = field(default_factory=set)

    def keys(self) -> set[str]:
        return self.missing | self.extra | self.different

    def add(self, other: Differences) -> None:
        self.compared += other.compared
        self.missing |= other.missing
        self.extra |= other.extra
        self.different |= other.different

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS}

    def without(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` (found equal on a second look)."""
        gone = set(keys)
        self.missing -= gone
        self.extra -= gone
        self.different -= gone

    def replace(self, keys: set[str], again: Differences) -> None:
        """``keys`` were compared again: what ``again`` says of them replaces what was known."""
        self.without(keys)
        self.missing |= again.missing
        self.extra |= again.extra
        self.different |= again.different


def diff_rows(
    source: Mapping[str, str], target: Mapping[str, str], counts_extra: bool = True
) -> Differences:
    """What differs between the rows the target should hold (``source``) and those it holds.

    ``counts_extra`` False (``on_delete: ignore``): a target row the source lacks is expected.
    """
    differences = Differences(compared=len(source))
    for key, digest in source.items():
        held = target.get(key)
        if held is None:
            differences.missing.add(key)
        elif held != digest:
            differences.different.add(key)
    if counts_extra:
        differences.extra = {key for key in target if key not in source}
    return differences


def samples(differences: Differences, key_columns: tuple[str, ...]) -> dict[str, list[Any]]:
    """Up to SAMPLE_KEYS keys of each kind, as ``{source key column: value}`` objects."""
    return {
        kind: [key_object(key, key_columns) for key in _in_order(getattr(differences, kind))]
        for kind in KINDS
    }


def _in_order(keys: set[str]) -> list[str]:
    """The first SAMPLE_KEYS keys in key order (by value: [2] before [10]; by text where the
    values do not compare)."""
    try:
        return sorted(keys, key=jsonvalue.loads)[:SAMPLE_KEYS]
    except TypeError:
        return sorted(keys)[:SAMPLE_KEYS]


def key_object(key: str, key_columns: tuple[str, ...]) -> dict[str, Any]:
    return dict(zip(key_columns, jsonvalue.loads(key), strict=True))


@dataclass
class Verdict:
    """One mapping's result: what remains different, and what ``--repair`` corrected."""

    mapping: str
    key_columns: tuple[str, ...]
    remaining: Differences
    found: Differences | None = None  # with --repair: what the first pass found
    repaired: int = 0  # corrective events written

    @property
    def equal(self) -> bool:
        return not self.remaining.keys()

    def as_json(self) -> dict[str, Any]:
        remaining = self.remaining
        record: dict[str, Any] = {
            "mapping": self.mapping,
            "compared": remaining.compared,
            **remaining.counts(),
            "samples": samples(remaining, self.key_columns),
        }
        if self.found is not None:
            record["repaired"] = {**self.found.counts(), "events": self.repaired}
            record["found_samples"] = samples(self.found, self.key_columns)
        return record

    def lines(self) -> list[str]:
        """The human report: a summary line, then sample keys per kind."""
        shown = self.found if self.found is not None else self.remaining
        head = f"{self.mapping}: {shown.compared} rows compared: {_counted(shown)}"
        if self.found is not None and self.found.keys():
            after = "equal now" if self.equal else f"still {_counted(self.remaining)}"
            head += f"; repaired with {self.repaired} corrective events, {after}"
        lines = [head]
        for kind, keys in samples(self.remaining, self.key_columns).items():
            if keys:
                more = len(getattr(self.remaining, kind)) - len(keys)
                listed = ", ".join(jsonvalue.dumps(key) for key in keys)
                lines.append(f"  {kind}: {listed}" + (f" (and {more} more)" if more else ""))
        return lines


def _counted(differences: Differences) -> str:
    if not differences.keys():
        return "equal"
    return ", ".join(f"{count} {kind}" for kind, count in differences.counts().items())
