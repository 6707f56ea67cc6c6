"""The ``sources:`` section of config.yaml: the databases syncd captures changes from.

Read by :func:`syncd.config.load_config` with the same :class:`~syncd.config.reader.Reader`
as every other section, so its problems come in the same list, file and line first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL

from syncd.config.drivers import DriverProblem, with_driver
from syncd.config.reader import (
    Invalid,
    Reader,
    display_url,
    queue_destination,
    url_with_secret,
    whole_number,
)
from syncd.config.yamlfile import Node

# The keys of one source under `sources:`; None: required (or, for queue, derived from the name).
SOURCE_DEFAULTS: dict[str, Any] = {
    "url": None,
    "password": None,
    "password_file": None,
    "capture": None,  # logical | outbox
    "tables": None,  # [schema.table, ...]
    "queue": None,  # broker.queue_prefix + the source's name
    "batch_events": 500,  # events per batch read from the source and published
    "transactions": "per-row",  # per-row | atomic: each source transaction reaches a target whole
}
TRANSACTION_MODES = ("per-row", "atomic")
# Each capture mode (syncd.capture.logical, .outbox), the databases it reads, and how to say so.
CAPTURE_BACKENDS = {
    "logical": (("postgresql",), "PostgreSQL"),
    "outbox": (("postgresql", "sqlite", "mysql", "mariadb"), "PostgreSQL, SQLite or MariaDB/MySQL"),
}
# A source's name becomes part of slot, publication, function and trigger names.
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
EXAMPLE_SOURCE_URL = "postgresql+psycopg2://syncd@db1:5432/crm"
SOURCE_SETTINGS_EXAMPLE = (
    f"{{url: '{EXAMPLE_SOURCE_URL}', capture: logical, tables: [public.customers]}}"
)


@dataclass(frozen=True)
class SourceConfig:
    """A database syncd captures changes from, and the queue they travel on."""

    name: str  # the events' source.name; part of the slot / trigger names
    url: URL = field(repr=False)  # with the password filled in: log display_url instead
    capture: str  # logical | outbox (CAPTURE_BACKENDS)
    tables: tuple[str, ...]  # as written: schema.table or table
    queue: str
    batch_events: int  # events per batch read from the source and published
    # atomic: each source transaction travels as one unit (syncd.pipeline.transactions) and is
    # applied to each target database in one database transaction; per-row: each event on its own.
    transactions: str = "per-row"

    @property
    def atomic(self) -> bool:
        return self.transactions == "atomic"

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return display_url(self.url)


def read_sources(r: Reader, node: Node | None, queue_prefix: str) -> dict[str, SourceConfig]:
    """The ``sources:`` section, each source checked; a source with a problem is left out."""
    if node is None or node.value is None:
        return {}  # absent or commented out: nothing is captured
    entries = node.mapping
    if entries is None:
        r.problem(
            node.line,
            "sources",
            f"expected source names with their settings, like crm: {SOURCE_SETTINGS_EXAMPLE}, "
            f"found {node.describe()}",
        )
        return {}
    sources: dict[str, SourceConfig] = {}
    for name, entry in entries.items():
        source = _source(r, name, entry, queue_prefix)
        if source is not None:
            sources[name] = source
    return sources


def _source(r: Reader, name: str, node: Node, queue_prefix: str) -> SourceConfig | None:
    path = f"sources.{name}"
    if not _SOURCE_NAME.fullmatch(name):
        r.problem(
            node.line,
            path,
            "a source name must be a lowercase letter, then up to 31 lowercase letters, digits "
            "and _ (it becomes part of the replication slot's or the triggers' names), e.g. crm",
        )
    entries = node.mapping
    if entries is None:
        r.problem(node.line, path, f"expected {SOURCE_SETTINGS_EXAMPLE}, found {node.describe()}")
        return None
    r.check_keys(entries, path, list(SOURCE_DEFAULTS))
    url = url_with_secret(r, node, entries, path, EXAMPLE_SOURCE_URL)
    capture = r.scalar(entries, path, "capture", _capture_mode, None)
    if capture is None and "capture" not in entries:
        r.problem(node.line, f"{path}.capture", "missing; write capture: logical or outbox")
    tables = _source_tables(r, entries.get("tables"), node.line, path)
    queue = r.scalar(entries, path, "queue", queue_destination, queue_prefix + name)
    batch_events = r.scalar(
        entries, path, "batch_events", whole_number(1, 100_000), SOURCE_DEFAULTS["batch_events"]
    )
    transactions = r.scalar(
        entries, path, "transactions", _transaction_mode, SOURCE_DEFAULTS["transactions"]
    )
    if url is None or capture is None or not tables:
        return None
    url = _readable(r, path, entries, url, capture)
    if url is None:
        return None
    if transactions == "atomic" and not _keeps_transactions(capture, url):
        r.problem(
            r.line_of(entries, "transactions"),
            f"{path}.transactions",
            f"capture: {capture} from {url.get_backend_name()} cannot name the source's "
            "transactions; atomic needs capture: logical, or capture: outbox from PostgreSQL. "
            "Write transactions: per-row",
        )
        return None
    return SourceConfig(name, url, capture, tables, queue, batch_events, transactions)


def _keeps_transactions(capture: str, url: URL) -> bool:
    """Whether ``capture`` from ``url`` knows which events one source transaction made."""
    return capture == "logical" or url.get_backend_name() == "postgresql"


def _readable(r: Reader, path: str, entries: dict[str, Node], url: URL, capture: str) -> URL | None:
    """``url`` with its driver, if ``capture`` can read its kind of database (a problem if not)."""
    backends, described = CAPTURE_BACKENDS[capture]
    if url.get_backend_name() not in backends:
        instead = f"a URL such as '{EXAMPLE_SOURCE_URL}'"
        if capture == "logical":
            instead += ", or capture: outbox"
        r.problem(
            r.line_of(entries, "url"),
            f"{path}.url",
            f"capture: {capture} reads {described} only, not {url.get_backend_name()}; "
            f"write {instead}",
        )
        return None
    try:
        return with_driver(url, backends)
    except DriverProblem as exc:
        r.problem(r.line_of(entries, "url"), f"{path}.url", str(exc))
        return None


def _source_tables(r: Reader, node: Node | None, line: int, path: str) -> tuple[str, ...]:
    """The ``tables`` of a source: a non-empty list of ``schema.table`` or ``table``."""
    path = f"{path}.tables"
    if node is None or node.value is None:
        r.problem(line, path, "missing; list the tables to capture, e.g. [public.customers]")
        return ()
    items = node.sequence
    if not items:
        r.problem(
            node.line,
            path,
            f"expected a list of tables such as [public.customers, public.orders], "
            f"found {node.describe()}",
        )
        return ()
    tables: list[str] = []
    for index, item in enumerate(items):
        expanded = r.expand(item, f"{path}[{index}]")
        if expanded is None:
            continue
        try:
            table = _source_table(expanded[0], expanded[1])
        except Invalid as exc:
            r.problem(item.line, f"{path}[{index}]", f"expected {exc}, found {item.describe()}")
            continue
        if table in tables:
            r.problem(item.line, f"{path}[{index}]", f"{table} is listed twice; keep one")
            continue
        tables.append(table)
    return tuple(tables) if len(tables) == len(items) else ()


def _capture_mode(value: object, from_env: bool) -> str:
    if value not in CAPTURE_BACKENDS:
        raise Invalid(
            "logical (PostgreSQL logical decoding) or outbox (triggers and an outbox table)"
        )
    return str(value)


def _transaction_mode(value: object, from_env: bool) -> str:
    if value not in TRANSACTION_MODES:
        raise Invalid(
            "per-row (each event applied on its own, the default) or atomic (each source "
            "transaction applied whole)"
        )
    return str(value)


def _source_table(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\w+(\.\w+)?", value, re.ASCII):
        raise Invalid("a table name such as public.customers or customers (letters, digits, _)")
    return value
