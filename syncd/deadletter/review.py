"""Reading the dead-letter queue back: which letters a command line chooses, which headers a
replay carries, how a letter reads in a table, in full or as JSON.

Pure decisions, no connection: ``syncd dlq`` (``syncd.commands.dlq``) browses the queue with
:class:`~syncd.broker.queues.QueueTool` and hands the letters here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from syncd import jsonvalue
from syncd.broker import DELIVERY_HEADERS, Message, Outgoing
from syncd.broker.parts import TX_ID
from syncd.broker.queues import SELECTOR_MAX_IDS
from syncd.errors import SyncdError

TABLE_WIDTH = 160
# Headers that describe the failure or the dead-lettering; a replay must not carry them, or a
# replayed event that fails again would be dead-lettered with a stale reason mixed in.
FAILURE_HEADERS = frozenset(
    {
        "syncd-failed-at",
        "syncd-mapping",
        "syncd-key",
        "syncd-attempts",
        "syncd-event-index",
        "syncd-replayed-from",  # a letter replayed before gets a new one
    }
)
FAILURE_HEADER_PREFIXES = ("syncd-error", "syncd-original-")
# The order in which `show` lists the headers that explain a dead letter; the rest follow sorted.
SHOW_FIRST = (
    "syncd-error",
    "syncd-error-class",
    "syncd-mapping",
    "syncd-key",
    "syncd-attempts",
    "syncd-event-index",
    "syncd-failed-at",
    "syncd-original-destination",
    "syncd-original-message-id",
    "syncd-group",
    "syncd-replayed-from",
)
# Headers about this tool's own subscription, not about the dead letter: `show` leaves them out.
SUBSCRIPTION_HEADERS = frozenset({"subscription", "ack"})


class SelectionError(SyncdError):
    """The command line chose no dead letters, or names one that is unknown or ambiguous."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message on the dead-letter queue, read through the headers syncd gave it."""

    message: Message

    @property
    def id(self) -> str:
        return self.message.message_id

    def header(self, name: str) -> str:
        return str(self.message.headers.get(name, ""))

    @property
    def error_class(self) -> str:
        return self.header("syncd-error-class")

    @property
    def mapping(self) -> str:
        return self.header("syncd-mapping")

    @property
    def key(self) -> str:
        return self.header("syncd-key")

    @property
    def error(self) -> str:
        return self.header("syncd-error")

    @property
    def failed_at(self) -> str:
        return self.header("syncd-failed-at")

    @property
    def original_destination(self) -> str:
        return self.header("syncd-original-destination")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command means: ids (or unique endings of them), or filters."""

    ids: tuple[str, ...] = ()
    everything: bool = False
    mapping: str | None = None
    error_class: str | None = None

    @property
    def filtered(self) -> bool:
        return self.mapping is not None or self.error_class is not None

    def require_choice(self) -> None:
        """For replay and purge: exactly one way of choosing, so nothing is taken by accident."""
        if not (self.ids or self.everything or self.filtered):
            raise SelectionError("choose the dead letters: IDs, --all, --mapping or --error-class")
        if self.ids and (self.everything or self.filtered):
            raise SelectionError("give either IDs or --all/--mapping/--error-class, not both")
        if self.everything and self.filtered:
            raise SelectionError("--all takes every dead letter: leave out --mapping/--error-class")

    def matches(self, letter: DeadLetter) -> bool:
        """True if the filters (--mapping, --error-class) let ``letter`` through."""
        return (self.mapping is None or letter.mapping == self.mapping) and (
            self.error_class is None or letter.error_class == self.error_class
        )

    def describe(self) -> str:
        parts = [f"--mapping {self.mapping}"] if self.mapping is not None else []
        if self.error_class is not None:
            parts.append(f"--error-class {self.error_class}")
        return " ".join(parts)


def resolve(letters: Sequence[DeadLetter], wanted: str, queue: str) -> DeadLetter:
    """The letter whose id is ``wanted``, or the only one whose id ends with it."""
    exact = [letter for letter in letters if letter.id == wanted]
    if exact:
        return exact[0]
    found = [letter for letter in letters if letter.id.endswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SelectionError(f"no dead letter {wanted} on {queue}")
    candidates = ", ".join(letter.id for letter in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    raise SelectionError(
        f"{wanted} is ambiguous: {len(found)} dead letters end with it ({candidates}{more}); "
        "give more of the ID"
    )


def select(letters: Sequence[DeadLetter], selection: Selection, queue: str) -> list[DeadLetter]:
    """The chosen letters, in queue order, each once; an unknown or ambiguous id raises."""
    if selection.ids:
        chosen = {resolve(letters, wanted, queue).id for wanted in selection.ids}
        return [letter for letter in letters if letter.id in chosen]
    return [letter for letter in letters if selection.matches(letter)]


# -- replay --------------------------------------------------------------------------------


def replay_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a dead letter is replayed with.

    The original application headers, without what describes the failure or one delivery;
    ``JMSXGroupID`` from ``syncd-group`` (ActiveMQ never shows JMSXGroupID to a STOMP consumer,
    so the dead letter could not keep it); ``persistent``; and ``syncd-replayed-from``, the
    dead letter's message id, so that a replay can be traced in logs and a new dead letter.
    """
    replayed = {
        name: value
        for name, value in headers.items()
        if name not in DELIVERY_HEADERS
        and name not in FAILURE_HEADERS
        and not name.startswith(FAILURE_HEADER_PREFIXES)
    }
    if headers.get("syncd-group"):
        replayed["JMSXGroupID"] = headers["syncd-group"]
    replayed["persistent"] = "true"
    if headers.get("message-id"):
        replayed["syncd-replayed-from"] = headers["message-id"]
    return replayed


def replay_message(message: Message) -> Outgoing:
    """The dead letter ``message`` as it goes back to where it came from, body untouched."""
    destination = message.headers.get("syncd-original-destination")
    if not destination:
        # select_replayable() keeps these out; raising aborts the transaction, dropping nothing.
        raise SelectionError(f"{message.message_id} has no syncd-original-destination")
    return Outgoing(destination, message.body, replay_headers(message.headers))


def whole_transactions(
    chosen: Sequence[DeadLetter], browsed: Sequence[DeadLetter]
) -> list[DeadLetter]:
    """``chosen`` and every other part of each source transaction one of them belongs to.

    A transaction is dead-lettered whole (``syncd.pipeline.transactions``) and must be replayed
    whole, its parts in order: a part replayed alone would only be dead-lettered again as broken.
    """
    transactions = {_transaction_of(letter) for letter in chosen} - {None}
    ids = {letter.id for letter in chosen}
    return [
        letter for letter in browsed if letter.id in ids or _transaction_of(letter) in transactions
    ]


def replay_batches(letters: Sequence[DeadLetter]) -> list[list[DeadLetter]]:
    """``letters`` in batches that the broker moves in one transaction each, never splitting a
    source transaction: a consumer must get its parts back to back, no other message between."""
    batches: list[list[DeadLetter]] = []
    current: list[DeadLetter] = []
    for letter in letters:
        starts_anew = not current or _transaction_of(letter) != _transaction_of(current[-1])
        if starts_anew and len(current) >= SELECTOR_MAX_IDS:
            batches.append(current)
            current = []
        # A transaction with more parts than a batch holds goes alone, moved in order.
        if starts_anew and current and _transaction_of(letter) is not None:
            size = sum(1 for x in letters if _transaction_of(x) == _transaction_of(letter))
            if len(current) + size > SELECTOR_MAX_IDS:
                batches.append(current)
                current = []
        current.append(letter)
    if current:
        batches.append(current)
    return batches


def _transaction_of(letter: DeadLetter) -> tuple[str, str] | None:
    tx_id = letter.header(TX_ID)
    return (letter.original_destination, tx_id) if tx_id else None


def replayable(letters: Iterable[DeadLetter]) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """The letters that say where they came from, and those that do not (cannot be replayed)."""
    letters = list(letters)
    return (
        [letter for letter in letters if letter.original_destination],
        [letter for letter in letters if not letter.original_destination],
    )


# -- formatting ----------------------------------------------------------------------------


def fit(text: str, width: int) -> str:
    """``text`` on one line in ``width`` characters, cut with an ellipsis at the end."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


def fit_left(text: str, width: int) -> str:
    """``text`` in ``width`` characters, cut at the start: the end of an id stays usable."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def short_time(iso: str) -> str:
    """``2026-03-01T10:00:00.123+00:00`` as ``2026-03-01 10:00:00`` (the header is UTC)."""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


TABLE_HEADINGS = ("ID", "FAILED AT (UTC)", "CLASS", "MAPPING", "KEY", "ERROR")
# The widest a column may grow (the error column takes what is left of the table's width).
TABLE_MAX_WIDTHS = (48, 19, 17, 24, 24)
TABLE_MIN_ERROR_WIDTH = 20


def format_table(letters: Sequence[DeadLetter], width: int = TABLE_WIDTH) -> str:
    """A table of ``letters``, one per line, that fits in ``width`` columns.

    A long id is shown by its end (which `show`, `replay` and `purge` accept); a long
    mapping, key or error is cut with an ellipsis (`list --json` has them in full).
    """
    rows = [
        (letter.id, short_time(letter.failed_at), letter.error_class, letter.mapping, letter.key)
        for letter in letters
    ]
    columns = zip(TABLE_HEADINGS[:-1], *rows, strict=True)  # column by column, heading first
    widths = [
        min(limit, max(len(cell) for cell in column))
        for limit, column in zip(TABLE_MAX_WIDTHS, columns, strict=True)
    ]
    error_width = max(TABLE_MIN_ERROR_WIDTH, width - sum(widths) - 2 * len(widths))
    lines = [_table_line(TABLE_HEADINGS[:-1], TABLE_HEADINGS[-1], widths, error_width)]
    for row, letter in zip(rows, letters, strict=True):
        lines.append(_table_line(row, letter.error, widths, error_width))
    return "\n".join(lines)


def _table_line(cells: Sequence[str], error: str, widths: Sequence[int], error_width: int) -> str:
    first, *rest = cells
    parts = [fit_left(first, widths[0]).ljust(widths[0])]
    parts += [fit(cell, w).ljust(w) for cell, w in zip(rest, widths[1:], strict=True)]
    return "  ".join([*parts, fit(error, error_width)]).rstrip()


def as_json(letters: Sequence[DeadLetter]) -> str:
    """Every letter in full — headers and body — as a JSON array, for scripts."""
    return json.dumps(
        [
            {
                "id": letter.id,
                "failed_at": letter.failed_at,
                "error_class": letter.error_class,
                "mapping": letter.mapping,
                "key": letter.key,
                "error": letter.error,
                "original_destination": letter.original_destination,
                "headers": dict(sorted(letter.message.headers.items())),
                "body": letter.message.body.decode("utf-8", errors="replace"),
            }
            for letter in letters
        ],
        indent=2,
        ensure_ascii=False,
    )


def format_letter(letter: DeadLetter) -> str:
    """Every header of ``letter``, the explaining ones first, then its body."""
    headers = letter.message.headers
    names = [n for n in SHOW_FIRST if n in headers]
    names += sorted(n for n in headers if n not in SHOW_FIRST and n not in SUBSCRIPTION_HEADERS)
    width = max(len(name) for name in names)
    lines = [f"{name.ljust(width)}  {headers[name]}" for name in names]
    return "\n".join([*lines, "", pretty_body(letter.message.body)])


def pretty_body(body: bytes) -> str:
    """The body pretty-printed if it is JSON, else as text (undecodable bytes replaced)."""
    text = body.decode("utf-8", errors="replace")
    try:
        return jsonvalue.dumps_indented(jsonvalue.loads(text))  # every digit as it came
    except ValueError:
        return text


def destinations_summary(messages: Iterable[Message]) -> str:
    """``2 to /queue/syncd.crm, 1 to /queue/syncd.shop``."""
    counts = Counter(str(m.headers.get("syncd-original-destination")) for m in messages)
    return ", ".join(f"{count} to {destination}" for destination, count in sorted(counts.items()))
