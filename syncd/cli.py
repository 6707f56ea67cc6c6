"""The `syncd` command: run, check, publish."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from syncd.broker import Outgoing
from syncd.config import Config, load_config
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
from syncd.mapping import load_mappings

log = logging.getLogger("syncd")

EPILOG = """\
exit codes:
  0  success
  1  unexpected failure (systemd restarts the daemon)
  2  bad command line, config.yaml or mapping file: fix it, a restart cannot help
  3  a broker or database needed by the command is unreachable
  4  publish: some input lines were rejected or not confirmed by the broker
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        _print_problems(exc)
        return ExitCode.BAD_CONFIG
    _setup_logging(config.logging.level)
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
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "-c",
            "--config",
            default=os.environ.get("SYNCD_CONFIG", "config.yaml"),
            help="configuration file (default: $SYNCD_CONFIG or ./config.yaml)",
        )
        return sub

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
    return parser


def _run(config: Config, _args: argparse.Namespace) -> int:
    from syncd.daemon import run

    run(config)
    return ExitCode.OK


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
    with _open_input(args.file) as (name, stream), Publisher(config, mappings) as publisher:

        def messages() -> Iterator[Outgoing]:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    event = decode_event(json.loads(line))
                except (ValueError, DecodeError) as exc:
                    rejected.append(f"{name}:{number}: {exc}")
                    continue
                yield publisher.message_for(event, line.strip().encode())

        try:
            confirmed = publisher.publish_messages(messages())
        except PublishError as exc:
            print(f"syncd publish: {exc}", file=sys.stderr)
            print(
                f"syncd publish: {exc.confirmed} events confirmed by the broker; the rest were "
                "not published (publishing them again is harmless)",
                file=sys.stderr,
            )
            return ExitCode.PARTIAL
    for line in rejected:
        print(line, file=sys.stderr)
    print(f"published {confirmed} events, {len(rejected)} lines rejected", file=sys.stderr)
    return ExitCode.PARTIAL if rejected else ExitCode.OK


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


def _setup_logging(level: str) -> None:
    # Under systemd, journald stamps each line with time and unit: no timestamp of our own.
    timestamps = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"{timestamps}%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("stomp.py").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
