"""Whole source transactions (``sources.NAME.transactions: atomic``): on the wire and in a batch.

A captured source transaction travels as one or more **parts**, each a message whose body is a
JSON array of its events, in order, with headers:

- ``syncd-tx-id`` — names the transaction (``crm:991:0/16B3748``: source, xid, commit LSN);
- ``syncd-tx-part`` — 1, 2, 3 … in order;
- ``syncd-tx-parts`` — the number of parts; on the last part at least (a part count that is
  not known while streaming is said at the end), and wherever it is said it must agree.

The apply loop frames what it takes into **units** (:func:`frame`): a message outside any
transaction is a unit of its own; the parts of one transaction, all present and in order, are
one unit, applied to each target database in one database transaction and acknowledged only
after that commit. What cannot be a whole transaction is never applied in part:

- parts out of order, a part twice, a part count that disagrees with itself or with the parts,
  parts of a transaction interrupted by another message, or a transaction whose last part did
  not come within ``REST_WAIT_S``: the unit is *broken* and dead-lettered whole, its reason
  saying what was wrong (the messages keep their ``syncd-tx-*`` headers, so a replay sends the
  transaction again as it came);
- a transaction that starts again at part 1 before its last part (a publisher that died in the
  middle and sent it again from the start): the first, incomplete copy is *superseded* —
  acknowledged, not applied; the new copy carries every event again.

Framing is per queue: transactions of different sources may interleave in one batch.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from syncd.broker import Message
from syncd.broker.parts import REST_WAIT_S, TX_ID, TX_PART, TX_PARTS
from syncd.change import Change
from syncd.deadletter.letters import ErrorClass, Reason


class UnitKind(enum.Enum):
    SINGLE = "single"  # a message outside any transaction: per-row, as ever
    WHOLE = "whole"  # every part of one transaction, in order
    SUPERSEDED = "superseded"  # an incomplete copy the publisher sent again from part 1
    BROKEN = "broken"  # not a whole transaction: dead-lettered whole, never applied


class Item(Protocol):
    """What framing needs of a message of the batch (the apply loop's ``_Pending``)."""

    @property
    def message(self) -> Message: ...

    unit: Unit | None


@dataclass(eq=False)
class Unit:
    """Messages that are applied (or dead-lettered, or acknowledged unapplied) together."""

    kind: UnitKind
    items: list[Item] = field(default_factory=list)
    tx_id: str | None = None
    problem: str | None = None  # why a BROKEN unit is not a whole transaction
    rejection: str | None = None  # why a WHOLE unit was rejected (set by the apply loop)

    @property
    def applies(self) -> bool:
        """Whether this unit's changes go to the target (now)."""
        return self.kind in (UnitKind.SINGLE, UnitKind.WHOLE) and self.rejection is None


class _Header(ValueError):
    pass


@dataclass
class _Open:
    """A transaction whose last part has not come yet, on one queue."""

    unit: Unit
    next_part: int = 1
    parts: int | None = None  # as said by a part so far


class Framing:
    """Frames messages into units, one message at a time, in delivery order.

    ``open`` tells the taker of a batch that a transaction still lacks parts (the batch must
    not close yet); :meth:`finish` closes the framing: what is still open is broken.
    """

    def __init__(self) -> None:
        self.units: list[Unit] = []
        self._open: dict[str, _Open] = {}  # destination -> its open transaction
        self._broken: dict[str, Unit] = {}  # destination -> a broken unit still collecting
        self._generation: int | None = None

    @property
    def open(self) -> bool:
        return bool(self._open)

    def wait_s(self, usual_s: float) -> float:
        """How long to wait for the next message: the usual, or for an open transaction's rest."""
        return REST_WAIT_S if self._open else usual_s

    def add(self, item: Item) -> None:
        message = item.message
        if self._generation is not None and message.generation != self._generation:
            # A new connection redelivers from the oldest unacknowledged message: what an
            # older one delivered is dropped by the loop, and its open transactions with it.
            self._open.clear()
            self._broken.clear()
        self._generation = message.generation
        destination = message.destination
        tx_id = message.headers.get(TX_ID)
        broken = self._broken.get(destination)
        if broken is not None and tx_id == broken.tx_id:
            self._join(broken, item)  # the rest of a broken transaction goes with it
            return
        self._broken.pop(destination, None)
        current = self._open.get(destination)
        if current is not None and tx_id != current.unit.tx_id:
            self._break(destination, current, f"{_got(current)}, then {_describe(tx_id)}")
            current = None
        if tx_id is None:
            self._new(UnitKind.SINGLE, item)
            return
        try:
            part, parts = _part_numbers(message.headers)
        except _Header as exc:
            self._broken_here(destination, current, item, tx_id, str(exc))
            return
        if current is not None and part == 1:
            # Sent again from the start: the first copy lacks its end, the new one has all.
            current.unit.kind = UnitKind.SUPERSEDED
            del self._open[destination]
            current = None
        if current is None:
            if part != 1:
                self._broken_here(destination, None, item, tx_id, f"part {part} came first")
                return
            current = _Open(self._new(UnitKind.WHOLE, item, tx_id))
            self._open[destination] = current
        elif part != current.next_part:
            problem = f"{_got(current)}, then part {part} again or out of order"
            self._broken_here(destination, current, item, tx_id, problem)
            return
        else:
            self._join(current.unit, item)
        self._advance(destination, current, part, parts, item)

    def finish(self, why: str = f"its last part did not come within {REST_WAIT_S:g} s") -> None:
        """No more messages: an open transaction is broken (``why``)."""
        for destination, current in list(self._open.items()):
            self._break(destination, current, f"{_got(current)}; {why}")
        self._broken.clear()

    # -- inside ---------------------------------------------------------------------------

    def _advance(
        self, destination: str, current: _Open, part: int, parts: int | None, item: Item
    ) -> None:
        if parts is not None:
            if current.parts is not None and parts != current.parts:
                problem = f"part {part} says {parts} parts, an earlier one {current.parts}"
                self._break(destination, current, problem)
                return
            if parts < part:
                self._break(destination, current, f"part {part} says there are {parts} parts")
                return
            current.parts = parts
        current.next_part = part + 1
        if current.parts == part:
            del self._open[destination]  # whole

    def _new(self, kind: UnitKind, item: Item, tx_id: str | None = None) -> Unit:
        unit = Unit(kind, tx_id=tx_id)
        self.units.append(unit)
        self._join(unit, item)
        return unit

    @staticmethod
    def _join(unit: Unit, item: Item) -> None:
        unit.items.append(item)
        item.unit = unit

    def _break(self, destination: str, current: _Open, problem: str) -> None:
        current.unit.kind = UnitKind.BROKEN
        current.unit.problem = problem
        self._open.pop(destination, None)
        self._broken[destination] = current.unit

    def _broken_here(
        self, destination: str, current: _Open | None, item: Item, tx_id: str, problem: str
    ) -> None:
        """``item`` cannot continue ``current`` (or start anew): both go, broken, together."""
        if current is None:
            unit = self._new(UnitKind.BROKEN, item, tx_id)
            unit.problem = problem
            self._broken[destination] = unit
            return
        self._join(current.unit, item)
        self._break(destination, current, problem)


def frame(items: Iterable[Item]) -> list[Unit]:
    """The units of a taken batch (each item gets its ``unit``).

    A batch is taken until no transaction is open (or until ``REST_WAIT_S`` passed without its
    next part), so what is still open at its end is broken.
    """
    framing = Framing()
    for item in items:
        framing.add(item)
    framing.finish()
    return framing.units


def _part_numbers(headers: dict[str, str]) -> tuple[int, int | None]:
    part = _whole(headers.get(TX_PART), TX_PART)
    if part is None:
        raise _Header(f"{TX_PART} is missing")
    return part, _whole(headers.get(TX_PARTS), TX_PARTS)


def _whole(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise _Header(f"{name} is {text[:40]!r}, not a whole number from 1")
    return int(text)


def _got(current: _Open) -> str:
    return f"got parts 1 to {current.next_part - 1}" if current.next_part > 2 else "got part 1"


def _describe(tx_id: str | None) -> str:
    return "a message outside any transaction" if tx_id is None else f"transaction {tx_id}"


def unit_reason(unit: Unit, cause: str) -> str:
    """The dead-letter reason of every message of a transaction dead-lettered whole."""
    count = len(unit.items)
    return (
        f"transaction {unit.tx_id} dead-lettered whole ({count} "
        f"message{'s' if count != 1 else ''}): {cause}"
    )


# -- what the apply loop does with the units ---------------------------------------------------

WHOLE_MESSAGE = -1  # the failure index of a message that fails as a whole


class Pending(Item, Protocol):
    """A decoded message of the batch, as the apply loop keeps it (``_Pending``)."""

    events: list[Any]
    failures: dict[int, Reason]
    changes: list[tuple[int, Change]]  # each with the index of its event in the message
    skipped: list[str]


def streamed(unit: Unit | None) -> bool:
    """Whether ``unit`` is applied part by part (``syncd.pipeline.whole.apply_streamed``): a
    transaction of several parts — each but the last one full — is a large one."""
    return unit is not None and unit.kind is UnitKind.WHOLE and len(unit.items) > 1


def decoded_later(message: Message) -> bool:
    """Whether ``message`` may be a part of a large transaction: decoded when applied, not
    when taken (a large transaction's decoded events are never all in memory at once)."""
    return TX_ID in message.headers and message.headers.get(TX_PARTS) != "1"


def reject_whole(unit: Unit, reason: Reason) -> None:
    """Dead-letter ``unit`` whole for ``reason`` (its failing event named in the text)."""
    unit.rejection = reason.text
    text = unit_reason(unit, reason.text)
    whole = Reason(reason.error_class, text, reason.mapping, reason.key, reason.attempts)
    _fail_whole(unit, whole)


def set_aside(units: Iterable[Unit]) -> None:
    """Before applying: what must not be applied is taken out, and why it goes is said.

    A broken unit is dead-lettered whole. A superseded copy is acknowledged unapplied. A whole
    transaction with an event that cannot be applied (not decodable, no target row can be made
    of it) is dead-lettered whole — applying the rest would be applying part of it. An event of
    a table that no mapping takes is dead-lettered alone, as ever: it changes no target, so
    the rest still reaches the target whole.
    """
    for unit in units:
        if unit.kind is UnitKind.BROKEN:
            reason = Reason(ErrorClass.TRANSACTION, unit_reason(unit, unit.problem or "broken"))
            _fail_whole(unit, reason)
        elif unit.kind is UnitKind.SUPERSEDED:
            for item in _pending(unit):
                item.changes, item.failures = [], {}
        elif unit.kind is UnitKind.WHOLE:
            reject_failed(unit)


def reject_failed(unit: Unit) -> bool:
    """Dead-letter ``unit`` whole if one of its events failed; whether it was."""
    if unit.kind is not UnitKind.WHOLE or unit.rejection is not None:
        return unit.rejection is not None
    for part, item in enumerate(_pending(unit), start=1):
        for index, reason in sorted(item.failures.items()):
            if reason.error_class is ErrorClass.NO_MAPPING:
                continue
            where = "" if index == WHOLE_MESSAGE else f" event {index}"
            cause = f"part {part}{where}: {reason.text}"
            unit.rejection = cause
            whole = Reason(
                reason.error_class,
                unit_reason(unit, cause),
                reason.mapping,
                reason.key,
                reason.attempts,
            )
            _fail_whole(unit, whole)
            return True
    return False


E = TypeVar("E", bound=tuple[Item, int, Change])


def groups(entries: Sequence[E]) -> tuple[list[E], list[int]]:
    """``entries`` (a change with its message and event index) of the units that apply, each
    whole unit's together; and the group sizes.

    Units keep the order of their first change; a change of a single message is a group of
    its own (per-row, as ever), a whole transaction's changes are one group.
    """
    by_unit: dict[int, list[E]] = {}
    units: dict[int, Unit | None] = {}
    for entry in entries:
        item, _, change = entry
        unit = item.unit
        if unit is not None and not unit.applies:
            continue
        key = id(unit) if unit is not None else id(change)
        units[key] = unit
        by_unit.setdefault(key, []).append(entry)
    ordered: list[E] = []
    sizes: list[int] = []
    for key, members in by_unit.items():
        ordered += members
        whole = units.get(key)
        if whole is not None and whole.kind is UnitKind.WHOLE:
            sizes.append(len(members))
        else:
            sizes += [1] * len(members)
    return ordered, sizes


def applied_events(units: Iterable[Unit]) -> list[int]:
    """The number of events of each whole transaction that was applied."""
    return [
        unit_events(unit)
        for unit in units
        if unit.kind is UnitKind.WHOLE and unit.rejection is None
    ]


def unit_events(unit: Unit) -> int:
    """How many events the messages of ``unit`` carry."""
    return sum(len(item.events) for item in _pending(unit))


def _fail_whole(unit: Unit, reason: Reason) -> None:
    for item in _pending(unit):
        item.changes = []
        item.failures = {WHOLE_MESSAGE: reason}


def _pending(unit: Unit) -> list[Pending]:
    return cast(list[Pending], unit.items)
