"""``syncd mappings test``: what each mapping would do with each event — touching nothing.

A data team's dry run of a mapping change: every line of a JSON-lines file goes through the
same decoding and routing as in the daemon (filters, transforms, casts, ``set:``), and each
mapping's verdict is printed — never connecting to the broker or a target, writing nothing.
The position guard is not consulted (it lives in the target): ``upsert`` means the event
would be applied if it is newer than what the target holds for its key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from syncd import jsonvalue
from syncd.change import Change
from syncd.errors import DecodeError, MappingApplyError, NoMappingError
from syncd.events import BadEvent, ChangeEvent, Skipped, decode_body
from syncd.mapping import Mapping
from syncd.routing import Router

ACTIONS = ("upsert", "delete", "soft-delete", "ignore", "filtered", "no-mapping", "dead-letter")


@dataclass
class Outcome:
    """What one mapping would do with the event on one line (``mapping`` None: no mapping)."""

    line: int
    mapping: str | None
    action: str  # one of ACTIONS
    table: str | None = None
    key: dict[str, Any] | None = None
    row: dict[str, Any] | None = None  # the target row as it would be written (upserts)
    error: str | None = None  # why it would be dead-lettered


def dry_run(
    lines: Iterable[str], mappings: list[Mapping], only: set[str] | None = None
) -> Iterator[Outcome]:
    """An outcome per event and mapping (of ``only``, if given), in input order."""
    router = Router(mappings)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            slots = decode_body(line.encode("utf-8", "surrogatepass"))
        except DecodeError as exc:
            yield Outcome(number, None, "dead-letter", error=str(exc))
            continue
        for slot in slots:
            if isinstance(slot, BadEvent):
                yield Outcome(number, None, "dead-letter", error=str(slot.error))
                continue
            if isinstance(slot, Skipped):  # a Debezium heartbeat, transaction marker, …
                yield Outcome(number, None, "ignore", error=f"not a row change: {slot.reason}")
                continue
            yield from _event(number, slot, router, only)


def _event(
    number: int, event: ChangeEvent, router: Router, only: set[str] | None
) -> Iterator[Outcome]:
    try:
        mappings = router.mappings_for(event)
    except NoMappingError as exc:
        if only is None:
            yield Outcome(number, None, "no-mapping", error=str(exc))
        return
    for mapping in mappings:
        if only is not None and mapping.name not in only:
            continue
        table = mapping.target_table
        try:
            changes = router.changes_of(mapping, event)
        except MappingApplyError as exc:
            yield Outcome(number, mapping.name, "dead-letter", table, error=str(exc))
            continue
        change = changes[-1]  # a key change: the old key's delete comes first
        yield Outcome(
            number,
            mapping.name,
            _action(mapping, event, change),
            table,
            key=change.target_key or None,
            row=None if change.delete else change.row,
        )


def _action(mapping: Mapping, event: ChangeEvent, change: Change) -> str:
    if not change.delete:
        return "upsert"
    if event.op not in ("d", "t"):
        return "filtered"  # kept out by `where`: removed as on_delete says, if it was there
    return {"delete": "delete", "ignore": "ignore", "soft": "soft-delete"}[mapping.on_delete.action]


def write_json(outcomes: Iterable[Outcome], out: TextIO) -> bool:
    """One JSON object per outcome; whether any would be dead-lettered."""
    dead = False
    for outcome in outcomes:
        dead = dead or outcome.action == "dead-letter"
        out.write(jsonvalue.dumps_ascii(asdict(outcome)) + "\n")
    return dead


def write_table(outcomes: Iterable[Outcome], out: TextIO, width: int = 160) -> bool:
    """A readable table, a row per outcome, cut to ``width``; whether any would dead-letter."""
    rows = [("LINE", "MAPPING", "ACTION", "TABLE", "KEY", "ROW / ERROR")]
    counts = dict.fromkeys(ACTIONS, 0)
    for o in outcomes:
        counts[o.action] += 1
        detail = o.error if o.error is not None else _compact(o.row) if o.row else ""
        key = _compact(o.key) if o.key else ""
        rows.append((str(o.line), o.mapping or "-", o.action, o.table or "-", key, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        out.write((text if len(text) <= width else text[: width - 1] + "…").rstrip() + "\n")
    summary = ", ".join(f"{n} {action}" for action, n in counts.items() if n)
    out.write(f"{summary or 'no events'}; nothing was written anywhere\n")
    return counts["dead-letter"] > 0


def _compact(value: dict[str, Any] | None) -> str:
    return jsonvalue.dumps(value)
