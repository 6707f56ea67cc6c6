"""The `syncd` command: run, check, publish, status, dlq (list, show, replay, purge),
capture (install, uninstall), snapshot, mappings (test), schema and verify."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from syncd import jsonvalue
from syncd.broker import Outgoing
from syncd.capture import Captured
from syncd.commands import dlq
from syncd.commands.parsers import command_group, subcommand
from syncd.commands.status import add_arguments as status_arguments
from syncd.config import Config, SourceConfig, load_config
from syncd.daemon.logs import setup_logging
from syncd.errors import (
    BrokerRefused,
    BrokerUnavailable,
    CaptureError,
    ConfigError,
    DecodeError,
    ExitCode,
    Problem,
    PublishError,
    SourceUnavailable,
    TargetUnavailable,
)
from syncd.events import decode_event
from syncd.mapping import Mapping, load_mappings

log = logging.getLogger("syncd")

EPILOG = """\
exit codes:
  0  success
  1  unexpected failure (systemd restarts the daemon); capture install/uninstall and
     snapshot: the source refused (the message says what to do)
  2  bad command line, config.yaml or mapping file, or an unknown source: fix it, a restart
     cannot help. run: also a source not prepared for capture (syncd capture install)
  3  a broker or database needed by the command is unreachable
  4  publish: some input lines were rejected or not confirmed by the broker;
     snapshot: interrupted (run it again to resume)
  5  verify: differences remain
"""
CAPTURE_EPILOG = """\
logical (PostgreSQL logical decoding) needs wal_level=logical on the source and a primary key
(or REPLICA IDENTITY) on every table; install creates the publication and the replication
slot syncd_<source>. outbox creates the syncd_outbox table and triggers on every table.
Both are idempotent: run install again after changing a source's tables.

exit codes:
  0  success
  1  the source refused: wal_level is not logical, a table is missing or has no primary key,
     no rights, or (uninstall) the outbox holds unpublished changes and --force was not given
  2  bad command line or config.yaml, or an unknown source
  3  the source database is unreachable
"""
SCHEMA_EPILOG = """\
Types come from the source's catalog through syncd's type table per dialect pair (README:
"Target tables from the source"). What syncd prints is SQL: everything but the statements
is a comment. Running it again once applied prints that nothing is to do.

exit codes:
  0  success: the DDL printed, or run (--apply), or nothing to do
  1  a target refused a statement (no rights, say), or the source refused the catalog read
  2  bad command line, config.yaml or mapping file, an unknown --mapping or one whose source
     is not a capture source, a source table or column the mapping names but the source
     lacks, or a source type with no safe target type (the message says what to write)
  3  a source or target database is unreachable
"""


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
    except (BrokerUnavailable, TargetUnavailable, SourceUnavailable) as exc:
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
        return subcommand(commands, name, help_text, EPILOG)

    run = command(
        "run",
        "Run the daemon (until SIGTERM): consume change events and apply them, and capture the "
        "changes of every source under sources: onto its queue.",
    )
    run.add_argument(
        "--only",
        choices=("capture", "apply"),
        help="run only the captures (no mappings or targets needed) or only the apply loop",
    )
    run.set_defaults(command=_run)
    check = command(
        "check",
        "Validate config.yaml and every mapping file, and check the mappings against the target "
        "tables; print every problem found. Exit 0 if all is well, 2 otherwise.",
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="do not connect to the target and source databases",
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
    dlq.add_commands(commands)
    _add_capture_commands(commands)
    _add_mappings_commands(commands)
    snapshot = command(
        "snapshot",
        "Read a source's tables and publish every row as a snapshot event (op r, at position 0, "
        "so it never overwrites a captured change). Resumable: an interrupted snapshot goes on "
        "where it stopped when run again; its progress is kept in state_dir.",
    )
    snapshot.add_argument("--source", required=True, metavar="NAME", help="the source to read")
    snapshot.add_argument(
        "--table",
        action="append",
        metavar="T",
        help="only this table (repeat for several; default: every table of the source)",
    )
    snapshot.add_argument(
        "--restart", action="store_true", help="start over instead of resuming a stopped snapshot"
    )
    snapshot.set_defaults(command=_snapshot)
    schema = subcommand(
        commands,
        "schema",
        "For mappings whose source is a capture source: print the DDL that creates each "
        "missing target table from the source's catalog (through renames, casts, exclude, set: "
        "and the soft-delete column; primary key on the key's target columns), adds missing "
        "columns and creates the positions table. --apply runs it. Never drops or narrows "
        "anything.",
        SCHEMA_EPILOG,
    )
    schema.add_argument(
        "--mapping", action="append", metavar="M", help="only mapping M (repeat for several)"
    )
    schema.add_argument("--apply", action="store_true", help="run the DDL on the targets")
    schema.set_defaults(command=_schema)
    _add_verify_command(commands)
    return parser


VERIFY_EPILOG = """\
Rows still in flight are not differences: keys that differ are compared again after the daemon
has applied what the source had committed by then (a running `syncd run` is needed for that,
and for --repair).

exit codes:
  0  every target equals its source (with --repair: equal again)
  1  a query failed (the message says which)
  2  bad command line, config.yaml or mapping file; a mapping verify cannot compare (its source
     is not a capture source, or a database is not PostgreSQL)
  3  a source, target or the broker is unreachable
  5  differences remain
"""


def _add_verify_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = subcommand(
        commands,
        "verify",
        "Compare each mapping's source rows, through the mapping, with its target's, by key, "
        "while capture and apply run; print rows compared, missing, extra and different, with "
        "sample keys. --repair sends a corrective event for each difference through the "
        "source's queue and compares those keys again.",
        VERIFY_EPILOG,
    )
    verify.add_argument(
        "--mapping", action="append", metavar="M", help="only mapping M (repeat for several)"
    )
    verify.add_argument(
        "--repair", action="store_true", help="correct the differences through the normal path"
    )
    verify.add_argument("--json", action="store_true", help="one JSON object per mapping")
    verify.set_defaults(command=_verify)


def _verify(config: Config, args: argparse.Namespace) -> int:
    from syncd.errors import VerifyError
    from syncd.verify.run import choose_mappings, report, verify

    mappings = choose_mappings(
        config, load_mappings(config.mappings_dir, list(config.databases)), args.mapping
    )
    try:
        verdicts = verify(config, mappings, repair=args.repair, progress=sys.stderr)
    except (VerifyError, PublishError) as exc:
        print(f"syncd verify: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    report(verdicts, args.json, sys.stdout)
    return ExitCode.OK if all(v.equal for v in verdicts) else ExitCode.DIFFERENT


def _add_capture_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    about = (
        "Prepare source databases for capture, or undo it: the sources under sources: in "
        "config.yaml, or the one named by --source."
    )
    actions = command_group(commands, "capture", about, CAPTURE_EPILOG)
    install = subcommand(
        actions,
        "install",
        "Prepare each source for capture (logical: publication and replication slot; outbox: "
        "outbox table and triggers) and print what was done. Idempotent.",
        CAPTURE_EPILOG,
    )
    install.add_argument("--source", metavar="NAME", help="only this source (default: all)")
    install.set_defaults(command=_capture_install)
    uninstall = subcommand(
        actions,
        "uninstall",
        "Undo install: drop the replication slot (so the source stops keeping WAL for syncd) "
        "and publication, or the triggers and, once unused, the outbox table.",
        CAPTURE_EPILOG,
    )
    uninstall.add_argument("--source", metavar="NAME", help="only this source (default: all)")
    uninstall.add_argument(
        "--force",
        action="store_true",
        help="outbox: drop it even though it holds changes not published yet (they are lost)",
    )
    uninstall.set_defaults(command=_capture_uninstall)


MAPPINGS_EPILOG = """\
actions: upsert, delete, soft-delete, ignore (a delete the mapping ignores), filtered (kept
out by where: removed as on_delete says if it was in the target), no-mapping, dead-letter.
The position guard is not consulted: an upsert applies if it is newer than the target's row.

exit codes:
  0  every event would be applied (or filtered, or ignored)
  2  bad command line, config.yaml or mapping file, an unknown --mapping, an unreadable file
  4  some event would be dead-lettered
"""


def _add_mappings_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    about = "Try mappings out before they go live."
    actions = command_group(commands, "mappings", about, MAPPINGS_EPILOG)
    test = subcommand(
        actions,
        "test",
        "A dry run: for every event of a JSON-lines file, what each mapping would do with it "
        "(upsert, delete, soft-delete, ignore, filtered, no-mapping, dead-letter) and the "
        "target row it would write. Connects to nothing and writes nothing.",
        MAPPINGS_EPILOG,
    )
    test.add_argument("file", help="JSON-lines file of change events, or - for standard input")
    test.add_argument(
        "--mapping", action="append", metavar="M", help="only mapping M (repeat for several)"
    )
    test.add_argument("--json", action="store_true", help="one JSON object per event and mapping")
    test.set_defaults(command=_mappings_test)


def _mappings_test(config: Config, args: argparse.Namespace) -> int:
    from syncd.commands import dryrun

    mappings = load_mappings(config.mappings_dir, list(config.databases))
    only = set(args.mapping) if args.mapping else None
    unknown = sorted((only or set()) - {m.name for m in mappings})
    if unknown:
        names = ", ".join(m.name for m in mappings)
        message = f"--mapping: no mapping named {', '.join(unknown)} (there are: {names})"
        raise ConfigError([Problem(str(config.mappings_dir), None, message)])
    with _open_input(args.file) as (_name, stream):
        outcomes = dryrun.dry_run(stream, mappings, only)
        write = dryrun.write_json if args.json else dryrun.write_table
        dead = write(outcomes, sys.stdout)
    return ExitCode.PARTIAL if dead else ExitCode.OK


def _run(config: Config, args: argparse.Namespace) -> int:
    from syncd.daemon.main import run

    try:
        run(config, only=args.only)
    except CaptureError as exc:
        # The source is not prepared, or refuses: a human must act, so systemd must not loop.
        print(f"syncd: {exc}", file=sys.stderr)
        return ExitCode.BAD_CONFIG
    return ExitCode.OK


def _status(config: Config, args: argparse.Namespace) -> int:
    from syncd.commands.status import run_status

    return run_status(config, args)


def _check(config: Config, args: argparse.Namespace) -> int:
    from syncd.capture.runner import check_source
    from syncd.daemon.targets import build_appliers

    # A capture-only config (sources, no databases) has no mappings to check.
    mappings = (
        load_mappings(config.mappings_dir, list(config.databases)) if config.databases else []
    )
    if not args.offline:
        for applier in build_appliers(config, mappings, create=False).values():
            applier.close()
        for source in config.sources.values():
            check_source(source)
        _warn_drift(config, mappings)
    where = "" if args.offline else ", checked against their target tables"
    sources = f", {len(config.sources)} sources" if config.sources else ""
    reached = " (reachable)" if config.sources and not args.offline else ""
    print(f"{config.path}: OK ({len(mappings)} mappings{where}{sources}{reached})")
    return ExitCode.OK


def _schema(config: Config, args: argparse.Namespace) -> int:
    from syncd.commands import schema

    mappings = load_mappings(config.mappings_dir, list(config.databases))
    if not args.mapping:
        for mapping in mappings:
            if mapping.source_system not in config.sources:
                print(
                    f"-- mapping {mapping.name}: skipped; its source system "
                    f"{mapping.source_system} is not a capture source (no catalog to read)"
                )
    try:
        plans = schema.plan(config, schema.chosen(config, mappings, args.mapping))
        count = schema.write(plans, sys.stdout)
        if not count:
            print("-- nothing to do: every target table has what its mappings need")
        elif args.apply:
            done = schema.apply(config, plans)
            print(f"-- applied: {done} of {count} statements ({count - done} done meanwhile)")
        else:
            print(f"-- {count} statements; nothing was changed (--apply runs them)")
    except (CaptureError, schema.SchemaRefused) as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    return ExitCode.OK


def _warn_drift(config: Config, mappings: list[Mapping]) -> None:
    """Warnings, not errors: what capture sources have that their targets lack or type
    otherwise (the daemon still runs; on_new_column or syncd schema closes the gap)."""
    from syncd.commands.schema import drift

    try:
        warnings = drift(config, mappings)
    except (CaptureError, SourceUnavailable, TargetUnavailable) as exc:
        warnings = [f"the sources and targets could not be compared: {exc}"]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _chosen_sources(config: Config, name: str | None) -> list[SourceConfig]:
    """The source named by --source, or every source; ConfigError if there is none such."""
    if name is None:
        if not config.sources:
            raise ConfigError(
                [Problem(str(config.path), None, "sources: none configured; add one to capture")]
            )
        return list(config.sources.values())
    if name not in config.sources:
        known = ", ".join(config.sources) or "none"
        message = f"--source {name}: no such source in sources: (configured: {known})"
        raise ConfigError([Problem(str(config.path), None, message)])
    return [config.sources[name]]


def _capture_install(config: Config, args: argparse.Namespace) -> int:
    def install(source: SourceConfig) -> list[str]:
        if source.capture == "logical":
            from syncd.capture import logical

            return logical.install(source.url, source.name, source.tables)
        from syncd.capture import outbox

        return outbox.install(source.url, source.name, source.tables)

    return _for_each_source(config, args.source, "install", install)


def _capture_uninstall(config: Config, args: argparse.Namespace) -> int:
    def uninstall(source: SourceConfig) -> list[str]:
        if source.capture == "logical":
            from syncd.capture import logical

            return logical.uninstall(source.url, source.name)
        from syncd.capture import outbox

        return outbox.uninstall(source.url, source.name, force=args.force)

    return _for_each_source(config, args.source, "uninstall", uninstall)


def _for_each_source(
    config: Config, name: str | None, what: str, action: Callable[[SourceConfig], list[str]]
) -> int:
    """Run ``action`` on each chosen source, printing what it did; the worst exit code."""
    code = ExitCode.OK
    for source in _chosen_sources(config, name):
        try:
            lines = action(source)
        except SourceUnavailable as exc:
            print(f"syncd capture {what}: {source.name}: {exc}", file=sys.stderr)
            code = max(code, ExitCode.UNAVAILABLE)
            continue
        except CaptureError as exc:
            print(f"syncd capture {what}: {source.name}: {exc}", file=sys.stderr)
            code = max(code, ExitCode.FAILURE)
            continue
        print(f"{source.name} ({source.capture}, {source.display_url}):")
        for line in lines:
            print(f"  {line}")
    return code


def _snapshot(config: Config, args: argparse.Namespace) -> int:
    from syncd.capture.runner import publish_captured
    from syncd.capture.snapshot import run_snapshot
    from syncd.publisher import Publisher

    source = _chosen_sources(config, args.source)[0]
    stopping = threading.Event()
    _stop_on_signals(stopping)
    try:
        with Publisher(config) as publisher:

            def publish(events: Sequence[Captured]) -> None:
                publish_captured(publisher, source.queue, events)

            report = run_snapshot(
                source,
                publish,
                config.state_dir,
                tables=args.table,
                restart=args.restart,
                stopping=stopping,
            )
    except PublishError as exc:
        print(f"syncd snapshot: {exc}; run it again to resume", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except CaptureError as exc:
        print(f"syncd snapshot: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    for line in report.lines():
        print(line)
    if stopping.is_set():
        print("syncd snapshot: interrupted; run it again to resume", file=sys.stderr)
        return ExitCode.PARTIAL
    return ExitCode.OK


def _stop_on_signals(stopping: threading.Event) -> None:
    """SIGTERM/SIGINT: stop after the chunk in hand (its progress is kept); twice: at once."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            os._exit(128 + signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


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
                    event = decode_event(jsonvalue.loads(line))
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
            # Refused (login, certificate, rights): nothing gets through until that is fixed.
            refused = isinstance(exc.__cause__, BrokerRefused)
            return ExitCode.UNAVAILABLE if refused else ExitCode.PARTIAL
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
