"""The shape every ``syncd`` command shares: its description wrapped, its exit-code epilog
kept as written, and ``-c``; and commands with commands of their own."""

from __future__ import annotations

import argparse
import os
import textwrap


def subcommand(
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
    add_config_option(sub)
    return sub


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("SYNCD_CONFIG", "config.yaml"),
        help="configuration file (default: $SYNCD_CONFIG or ./config.yaml)",
    )


def command_group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    about: str,
    epilog: str,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command with commands of its own (``syncd dlq …``, ``syncd capture …``)."""
    group = commands.add_parser(
        name,
        help=about,
        description=textwrap.fill(about, 92),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return group.add_subparsers(title=f"{name} commands", required=True, metavar="ACTION")
