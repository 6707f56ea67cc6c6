"""``syncd dlq``: list, show, replay and purge what the daemon set aside.

Dead letters are read with a queue browser, so looking never takes anything; replay and purge
then take exactly the chosen ones by message id (:class:`~syncd.broker.queues.QueueTool`).
Which letters a command line chooses and how they read is ``syncd.deadletter.review``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from syncd.broker.queues import DEFAULT_BROWSE_LIMIT, Moved, QueueTool
from syncd.commands.parsers import command_group, subcommand
from syncd.config import Config
from syncd.deadletter.letters import ErrorClass
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


# -- the command line ------------------------------------------------------------------

DLQ_EPILOG = """\
Dead letters are read with a queue browser: listing or showing them takes nothing off the
queue. ActiveMQ lets a browser see only the oldest maxBrowsePageSize of them (400 by
default); replay or purge those, then run the command again for the rest.

exit codes:
  0  success, also when no dead letter matched
  2  bad command line or config.yaml, an unknown or ambiguous ID, or purge without a
     terminal and without --yes
  3  the broker is unreachable (nothing was replayed or purged after that point)
  4  replay/purge: some chosen dead letters were gone before they could be taken, or
     cannot be replayed (no syncd-original-destination)
"""
ERROR_CLASSES = [str(error_class) for error_class in ErrorClass]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    about = (
        "Find, inspect, replay and purge dead letters: the messages the daemon could not apply, "
        "kept on broker.dead_letter_queue with headers that say why."
    )
    actions = command_group(commands, "dlq", about, DLQ_EPILOG)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return subcommand(actions, name, help_text, DLQ_EPILOG)

    listing = action(
        "list",
        "List the dead letters, oldest first, without taking them off the queue: ID, when it "
        "failed, error class, mapping, key and error (cut to fit; --json has everything).",
    )
    _add_filter_options(listing)
    listing.add_argument(
        "--json", action="store_true", help="print every header and body as a JSON array"
    )
    listing.set_defaults(command=_dlq_list)
    show = action(
        "show",
        "Print one dead letter: every header, then the body (pretty-printed if it is JSON).",
    )
    show.add_argument("id", metavar="ID", help="its ID as `list` shows it, or any unique end of it")
    show.set_defaults(command=_dlq_show)
    replay = action(
        "replay",
        "Send dead letters back to the queue they came from (syncd-original-destination), body "
        "untouched, and take them off the dead-letter queue: each send commits together with "
        "the removal, so an interrupted replay loses nothing. Replaying an event that was "
        "applied meanwhile changes nothing. Choose with IDs, --all, --mapping or --error-class.",
    )
    _add_choice_options(replay)
    replay.set_defaults(command=_dlq_replay)
    purge = action(
        "purge",
        "Delete dead letters for good. Asks for confirmation on a terminal; elsewhere (scripts, "
        "cron) it refuses unless --yes is given. Choose with IDs, --all, --mapping or "
        "--error-class.",
    )
    _add_choice_options(purge)
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(command=_dlq_purge)


def _add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mapping", metavar="M", help="only the dead letters of mapping M")
    parser.add_argument(
        "--error-class",
        metavar="C",
        choices=ERROR_CLASSES,
        help="only the dead letters of error class C: " + ", ".join(ERROR_CLASSES),
    )


def _add_choice_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ids", nargs="*", metavar="ID", help="dead letter IDs, or unique ends of them"
    )
    parser.add_argument("--all", action="store_true", help="every dead letter")
    _add_filter_options(parser)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        ids=tuple(getattr(args, "ids", ())),
        everything=getattr(args, "all", False),
        mapping=args.mapping,
        error_class=args.error_class,
    )


def _dlq_list(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: list_command(config, _selection(args), args.json))


def _dlq_show(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: show_command(config, args.id))


def _dlq_replay(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: replay_command(config, _selection(args)))


def _dlq_purge(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: purge_command(config, _selection(args), args.yes))


def _dlq(run: Callable[[], int]) -> int:
    """Run a dlq command; a choice of dead letters that cannot be made is a usage error."""
    try:
        return run()
    except SelectionError as exc:
        print(f"syncd dlq: {exc}", file=sys.stderr)
        return ExitCode.BAD_CONFIG
