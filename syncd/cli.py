"""The `syncd` command: run, check, publish, and dlq (list, show, replay, purge)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from syncd import dlq
from syncd.broker import Outgoing
from syncd.config import Config, load_config
from syncd.deadletter import ErrorClass
from syncd.errors import (
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    ExitCode,
    Problem,
    PublishError,
    TargetUnavailable,
)
from syncd.events import decode_event
from syncd.logs import setup_logging
from syncd.mapping import load_mappings
from syncd.status import add_arguments as status_arguments

log = logging.getLogger("syncd")

EPILOG = """\
exit codes:
  0  success
  1  unexpected failure (systemd restarts the daemon)
  2  bad command line, config.yaml or mapping file: fix it, a restart cannot help
  3  a broker or database needed by the command is unreachable
  4  publish: some input lines were rejected or not confirmed by the broker
"""
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        _print_problems(exc)
        return ExitCode.BAD_CONFIG
    setup_logging(config.logging.level, config.logging.format)
    try:
        code: int = args.command(config, args)
        return code
    except ConfigError as exc:
        _print_problems(exc)
        return ExitCode.BAD_CONFIG
    except (BrokerUnavailable, TargetUnavailable) as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="syncd keeps target databases in step with source databases: change events "
        "travel as persistent STOMP messages through ActiveMQ and are applied to SQL targets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return _subcommand(commands, name, help_text, EPILOG)

    run = command("run", "Run the daemon: consume change events and apply them (until SIGTERM).")
    run.set_defaults(command=_run)
    check = command(
        "check",
        "Validate config.yaml and every mapping file, and check the mappings against the target "
        "tables; print every problem found. Exit 0 if all is well, 2 otherwise.",
    )
    check.add_argument(
        "--offline", action="store_true", help="do not connect to the target databases"
    )
    check.set_defaults(command=_check)
    publish = command(
        "publish",
        "Publish change events, one JSON object per line (JSON lines), to the broker. "
        "Returns once the broker has confirmed every event.",
    )
    publish.add_argument("file", help="JSON-lines file of change events, or - for standard input")
    publish.set_defaults(command=_publish)
    status = command(
        "status",
        "Show queue depths, dead letters, and how far each mapping's target has got "
        "(last position, lag). Exit 3 if the broker or a target cannot be read.",
    )
    status_arguments(status)
    status.set_defaults(command=_status)
    _add_dlq_commands(commands)
    return parser


def _subcommand(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    epilog: str,
) -> argparse.ArgumentParser:
    """A command with its description wrapped, the exit-code epilog kept as written, and -c."""
    sub = subparsers.add_parser(
        name,
        help=help_text,
        description=textwrap.fill(help_text, 92),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_option(sub)
    return sub


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("SYNCD_CONFIG", "config.yaml"),
        help="configuration file (default: $SYNCD_CONFIG or ./config.yaml)",
    )


def _add_dlq_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    about = (
        "Find, inspect, replay and purge dead letters: the messages the daemon could not apply, "
        "kept on broker.dead_letter_queue with headers that say why."
    )
    dlq = commands.add_parser(
        "dlq",
        help=about,
        description=textwrap.fill(about, 92),
        epilog=DLQ_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(title="dlq commands", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return _subcommand(actions, name, help_text, DLQ_EPILOG)

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


def _run(config: Config, _args: argparse.Namespace) -> int:
    from syncd.daemon import run

    run(config)
    return ExitCode.OK


def _status(config: Config, args: argparse.Namespace) -> int:
    from syncd.status import run_status

    return run_status(config, args)


def _check(config: Config, args: argparse.Namespace) -> int:
    from syncd.daemon import build_appliers

    mappings = load_mappings(config.mappings_dir, list(config.databases))
    if not args.offline:
        for applier in build_appliers(config, mappings, create=False).values():
            applier.close()
    where = "" if args.offline else ", checked against their target tables"
    print(f"{config.path}: OK ({len(mappings)} mappings{where})")
    return ExitCode.OK


def _publish(config: Config, args: argparse.Namespace) -> int:
    from syncd.publisher import Publisher

    mappings = load_mappings(config.mappings_dir, list(config.databases))
    rejected: list[str] = []
    sent_lines: list[int] = []  # the input line of each message handed to the publisher
    with _open_input(args.file) as (name, stream), Publisher(config, mappings) as publisher:

        def messages() -> Iterator[Outgoing]:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    event = decode_event(json.loads(line))
                except (ValueError, RecursionError, DecodeError) as exc:
                    rejected.append(f"{name}:{number}: {exc}")
                    continue
                sent_lines.append(number)
                yield publisher.message_for(event, line.strip().encode())

        try:
            confirmed = publisher.publish_messages(messages())
        except PublishError as exc:
            print(f"syncd publish: {exc}", file=sys.stderr)
            print(_unconfirmed(name, sent_lines, exc.confirmed), file=sys.stderr)
            return ExitCode.PARTIAL
    for line in rejected:
        print(line, file=sys.stderr)
    print(f"published {confirmed} events, {len(rejected)} lines rejected", file=sys.stderr)
    return ExitCode.PARTIAL if rejected else ExitCode.OK


def _unconfirmed(name: str, sent_lines: list[int], confirmed: int) -> str:
    """Which input lines are on the broker and which are not, for the one who must resend."""
    done = f" (through {name} line {sent_lines[confirmed - 1]})" if confirmed else ""
    rest = (
        f"; nothing from {name} line {sent_lines[confirmed]} on was published"
        if confirmed < len(sent_lines)
        else ""
    )
    return (
        f"syncd publish: the broker confirmed {confirmed} events{done}{rest}; "
        "publishing any of them again is harmless"
    )


def _selection(args: argparse.Namespace) -> dlq.Selection:
    return dlq.Selection(
        ids=tuple(getattr(args, "ids", ())),
        everything=getattr(args, "all", False),
        mapping=args.mapping,
        error_class=args.error_class,
    )


def _dlq_list(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: dlq.list_command(config, _selection(args), args.json))


def _dlq_show(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: dlq.show_command(config, args.id))


def _dlq_replay(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: dlq.replay_command(config, _selection(args)))


def _dlq_purge(config: Config, args: argparse.Namespace) -> int:
    return _dlq(lambda: dlq.purge_command(config, _selection(args), args.yes))


def _dlq(run: Callable[[], int]) -> int:
    """Run a dlq command; a choice of dead letters that cannot be made is a usage error."""
    try:
        return run()
    except dlq.SelectionError as exc:
        print(f"syncd dlq: {exc}", file=sys.stderr)
        return ExitCode.BAD_CONFIG


@contextmanager
def _open_input(file: str) -> Iterator[tuple[str, TextIO]]:
    if file == "-":
        yield "<stdin>", sys.stdin
        return
    try:
        stream = open(file, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError([Problem(file, None, f"cannot read the events file: {exc}")]) from exc
    with stream:
        yield file, stream


def _print_problems(error: ConfigError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    count = len(error.problems)
    print(f"syncd: {count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
