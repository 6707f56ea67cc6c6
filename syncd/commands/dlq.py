"""``syncd dlq``: list, show, replay and purge what the daemon set aside.

Dead letters are read with a queue browser, so looking never takes anything; replay and purge
then take exactly the chosen ones by message id (:class:`~syncd.broker.queues.QueueTool`).
Which letters a command line chooses and how they read is ``syncd.deadletter.review``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from syncd.broker.queues import DEFAULT_BROWSE_LIMIT, Moved, QueueTool
from syncd.config import Config
from syncd.deadletter.review import (
    DeadLetter,
    Selection,
    SelectionError,
    as_json,
    destinations_summary,
    format_letter,
    format_table,
    replay_batches,
    replay_message,
    replayable,
    resolve,
    select,
    whole_transactions,
)
from syncd.errors import ExitCode


def list_command(config: Config, selection: Selection, json_output: bool) -> int:
    """`syncd dlq list`: the dead letters, left where they are."""
    queue = config.broker.dead_letter_queue
    with QueueTool(config.broker) as tool:
        browsed = browse(tool, queue)
    chosen = select(browsed, selection, queue)
    if json_output:
        print(as_json(chosen))
    elif not chosen:
        matching = f" match {selection.describe()}" if selection.filtered else ""
        print(f"no dead letters on {queue}{matching}")
    else:
        print(format_table(chosen))
        print(_count_line(chosen, browsed, queue, selection))
    _warn_if_more_hidden(browsed)
    return ExitCode.OK


def show_command(config: Config, wanted: str) -> int:
    """`syncd dlq show ID`: one dead letter in full."""
    queue = config.broker.dead_letter_queue
    with QueueTool(config.broker) as tool:
        browsed = browse(tool, queue)
    try:
        letter = resolve(browsed, wanted, queue)
    except SelectionError:
        _warn_if_more_hidden(browsed)
        raise
    print(format_letter(letter))
    return ExitCode.OK


def replay_command(config: Config, selection: Selection) -> int:
    """`syncd dlq replay`: send the chosen dead letters back where they came from."""
    selection.require_choice()
    queue = config.broker.dead_letter_queue
    with QueueTool(config.broker) as tool:
        browsed = browse(tool, queue)
        chosen, stuck = replayable(whole_transactions(select(browsed, selection, queue), browsed))
        for letter in stuck:
            print(f"syncd dlq: {letter.id}: no syncd-original-destination, kept", file=sys.stderr)
        if not chosen:
            return _nothing_chosen(queue, selection, browsed, stuck)
        moved = Moved()
        for batch in replay_batches(chosen):
            step = tool.move(queue, [letter.id for letter in batch], replay_message)
            moved.taken.extend(step.taken)
            moved.missing.extend(step.missing)
    where = f": {destinations_summary(moved.taken)}" if moved.taken else ""
    print(f"replayed {letter_count(len(moved.taken))} from {queue}{where}")
    _warn_if_more_hidden(browsed)
    return _finish(moved, stuck)


def purge_command(
    config: Config, selection: Selection, assume_yes: bool, stdin: TextIO | None = None
) -> int:
    """`syncd dlq purge`: delete the chosen dead letters, once the sysadmin has confirmed."""
    selection.require_choice()
    stdin = stdin or sys.stdin
    queue = config.broker.dead_letter_queue
    with QueueTool(config.broker) as tool:
        browsed = browse(tool, queue)
        chosen = select(browsed, selection, queue)
        if not chosen:
            return _nothing_chosen(queue, selection, browsed, [])
        if not assume_yes:
            if not stdin.isatty():
                raise SelectionError(
                    f"purging {letter_count(len(chosen))} needs confirmation: run it on a "
                    "terminal, or add --yes"
                )
            if not confirm(f"Purge {letter_count(len(chosen))} from {queue}? Type 'yes': ", stdin):
                print("nothing purged")
                return ExitCode.OK
        moved = tool.move(queue, [letter.id for letter in chosen], lambda _message: None)
    print(f"purged {letter_count(len(moved.taken))} from {queue}")
    _warn_if_more_hidden(browsed)
    return _finish(moved, [])


def letter_count(count: int) -> str:
    """``1 dead letter``, ``2 dead letters``."""
    return f"{count} dead letter{'' if count == 1 else 's'}"


def browse(tool: QueueTool, queue: str) -> list[DeadLetter]:
    return [DeadLetter(message) for message in tool.browse(queue)]


def confirm(question: str, stdin: TextIO) -> bool:
    """Ask on the terminal; only a typed ``yes`` is a yes."""
    print(question, end="", file=sys.stderr, flush=True)
    return stdin.readline().strip() == "yes"


def _nothing_chosen(
    queue: str, selection: Selection, browsed: Sequence[DeadLetter], stuck: Sequence[DeadLetter]
) -> int:
    if not stuck:
        matching = f" match {selection.describe()}" if selection.filtered else ""
        print(f"no dead letters on {queue}{matching}")
    _warn_if_more_hidden(browsed)
    return ExitCode.PARTIAL if stuck else ExitCode.OK


def _finish(moved: Moved, stuck: Sequence[DeadLetter]) -> int:
    if moved.missing:
        print(
            f"syncd dlq: {letter_count(len(moved.missing))} chosen were no longer on the queue "
            f"(taken by someone else meanwhile?): {', '.join(moved.missing)}",
            file=sys.stderr,
        )
    return ExitCode.PARTIAL if moved.missing or stuck else ExitCode.OK


def _count_line(
    chosen: Sequence[DeadLetter], browsed: Sequence[DeadLetter], queue: str, selection: Selection
) -> str:
    if not selection.filtered:
        return f"{letter_count(len(chosen))} on {queue}"
    return f"{len(chosen)} of {letter_count(len(browsed))} on {queue} match {selection.describe()}"


def _warn_if_more_hidden(browsed: Sequence[DeadLetter]) -> None:
    if len(browsed) >= DEFAULT_BROWSE_LIMIT:
        print(
            f"syncd dlq: the broker showed {letter_count(len(browsed))}, the most it lets a "
            "queue browser see (ActiveMQ's maxBrowsePageSize, 400 by default): there may be "
            "more behind them. Replay or purge these, then run the command again.",
            file=sys.stderr,
        )
