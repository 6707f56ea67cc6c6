"""``config.yaml``: loaded once, validated completely, handed out as frozen dataclasses.

Every mistake in the file is collected and raised together in one :class:`ConfigError`, each
naming the file, the line, the key path, what was found and what to write instead, so a sysadmin
fixes the file in one pass. Defaults live in :data:`DEFAULTS` and nowhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from syncd.errors import ConfigError, Problem
from syncd.yamlfile import Node, describe, parse_yaml, unknown_key

# Every default in one table; the keys of each section are also the keys it allows.
DEFAULTS: dict[str, Any] = {
    "broker": {
        "hosts": ["127.0.0.1:61613"],  # several: failover in this order
        "user": None,
        "password": None,
        "password_file": None,
        "heartbeat_ms": 10_000,
        "connect_timeout_s": 10.0,
        "receipt_timeout_s": 30.0,
        "prefetch": 1000,
        "queue_prefix": "/queue/syncd.",  # a source system's queue is prefix + system name
        "dead_letter_queue": "/queue/syncd.DLQ",
        "publish_batch_events": 500,  # events per STOMP transaction when publishing
    },
    "databases": {},  # required unless sources are named: NAME: {url, password | password_file}
    "sources": {},  # optional, to capture from: NAME: {SOURCE_DEFAULTS' keys}
    "mappings": "mappings/",  # relative to the config file's directory
    "state_dir": "var/",  # the delivery ledger (crash-loop counts); relative to the config file
    "apply": {
        "batch_max_messages": 500,
        "batch_linger_ms": 20,
        "positions_table": "syncd_positions",
        "timeout_s": 30.0,  # deadline of one apply: statement timeout in the database, and ours
        "max_deliveries": 5,  # a message whose processing started this often is dead-lettered
    },
    "retry": {
        "attempts": 5,
        "initial_backoff_ms": 200,
        "max_backoff_ms": 10_000,
        "max_elapsed_s": 60.0,  # give up retrying a transient failure after this long
    },
    "logging": {
        "level": "info",
        "format": "text",  # text (key=value) | json (one object per line)
    },
    "metrics": {
        "listen": None,  # "127.0.0.1:9464": Prometheus /metrics and /healthz; unset: off
    },
}
DATABASE_KEYS = ("url", "password", "password_file")
# The keys of one source under `sources:`; None: required (or, for queue, derived from the name).
SOURCE_DEFAULTS: dict[str, Any] = {
    "url": None,
    "password": None,
    "password_file": None,
    "capture": None,  # logical | outbox
    "tables": None,  # [schema.table, ...]
    "queue": None,  # broker.queue_prefix + the source's name
    "batch_events": 500,  # events per batch read from the source and published
}
# Each capture mode (syncd.capture.logical, .outbox), the databases it reads, and how to say so.
CAPTURE_BACKENDS = {
    "logical": (("postgresql",), "PostgreSQL"),
    "outbox": (("postgresql", "sqlite", "mysql", "mariadb"), "PostgreSQL, SQLite or MariaDB/MySQL"),
}
# A source's name becomes part of slot, publication, function and trigger names.
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
LOG_LEVELS = ("debug", "info", "warning", "error")
EXAMPLE_URL = "postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse"
EXAMPLE_SOURCE_URL = "postgresql+psycopg2://syncd@db1:5432/crm"
SOURCE_SETTINGS_EXAMPLE = (
    f"{{url: '{EXAMPLE_SOURCE_URL}', capture: logical, tables: [public.customers]}}"
)


@dataclass(frozen=True)
class BrokerConfig:
    hosts: tuple[tuple[str, int], ...]  # failover in order
    user: str | None
    password: str | None = field(repr=False)  # from `password` or `password_file`
    heartbeat_ms: int
    connect_timeout_s: float
    receipt_timeout_s: float
    prefetch: int
    queue_prefix: str
    dead_letter_queue: str
    publish_batch_events: int  # events per STOMP transaction when publishing


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    url: str = field(repr=False)  # SQLAlchemy URL with the password filled in: never log it

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return make_url(self.url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class SourceConfig:
    """A database syncd captures changes from, and the queue they travel on."""

    name: str  # the events' source.name; part of the slot / trigger names
    url: URL = field(repr=False)  # with the password filled in: log display_url instead
    capture: str  # logical | outbox (CAPTURE_BACKENDS)
    tables: tuple[str, ...]  # as written: schema.table or table
    queue: str
    batch_events: int  # events per batch read from the source and published

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return self.url.render_as_string(hide_password=True)


@dataclass(frozen=True)
class ApplyConfig:
    batch_max_messages: int
    batch_linger_ms: int
    positions_table: str
    timeout_s: float
    max_deliveries: int


@dataclass(frozen=True)
class RetryConfig:
    attempts: int
    initial_backoff_ms: int
    max_backoff_ms: int
    max_elapsed_s: float


@dataclass(frozen=True)
class LoggingConfig:
    level: str  # one of LOG_LEVELS, lower case
    format: str  # text | json


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None  # host:port of the Prometheus endpoint; None: no endpoint


@dataclass(frozen=True)
class Config:
    path: Path  # the config file, absolute
    broker: BrokerConfig
    databases: Mapping[str, DatabaseConfig]  # read-only; empty only when sources are named
    mappings_dir: Path  # absolute
    state_dir: Path  # absolute
    apply: ApplyConfig
    retry: RetryConfig
    logging: LoggingConfig
    metrics: MetricsConfig
    # Read-only; empty: nothing to capture.
    sources: Mapping[str, SourceConfig] = field(default_factory=lambda: MappingProxyType({}))

    def queue_for(self, system: str) -> str:
        """The queue a source system's change events travel on."""
        return self.broker.queue_prefix + system


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` listing every problem found.

    ``environ`` supplies ``${VAR}`` values (default: ``os.environ``). Relative paths in the file
    (``mappings``, ``password_file``, SQLite database files) resolve against its directory.
    """
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(file, None, f"cannot read config: {exc}")]) from exc
    root, problems = parse_yaml(text, file)
    reader = _Reader(file, path.absolute().parent, os.environ if environ is None else environ)
    reader.problems.extend(problems)
    items = reader.root(root) if root is not None or not problems else None
    if items is None:
        raise ConfigError(reader.problems)
    config = _config(reader, items, path.absolute())
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=_by_line))
    return config


def _config(r: _Reader, items: dict[str, Node], path: Path) -> Config:
    mappings = r.scalar(items, "", "mappings", _text, DEFAULTS["mappings"])
    state_dir = r.scalar(items, "", "state_dir", _text, DEFAULTS["state_dir"])
    broker = _broker(r, items)
    sources = _sources(r, items.get("sources"), broker.queue_prefix)
    return Config(
        path=path,
        broker=broker,
        databases=MappingProxyType(
            _databases(r, items.get("databases"), bool(r.entries(items, "sources")))
        ),
        mappings_dir=r.base_dir / Path(mappings).expanduser(),
        state_dir=r.base_dir / Path(state_dir).expanduser(),
        apply=ApplyConfig(**r.section(items, "apply")),
        retry=_retry(r, items),
        logging=LoggingConfig(**r.section(items, "logging")),
        metrics=MetricsConfig(**r.section(items, "metrics")),
        sources=MappingProxyType(sources),
    )


def _broker(r: _Reader, items: dict[str, Node]) -> BrokerConfig:
    values = r.section(items, "broker")
    entries = r.entries(items, "broker")
    values["hosts"] = _hosts(r, entries.get("hosts"))
    password_file = values.pop("password_file")
    values["password"] = r.secret(entries, "broker", values["password"], password_file)
    return BrokerConfig(**values)


def _retry(r: _Reader, items: dict[str, Node]) -> RetryConfig:
    retry = RetryConfig(**r.section(items, "retry"))
    if retry.max_backoff_ms < retry.initial_backoff_ms:
        line = r.line_of(r.entries(items, "retry"), "max_backoff_ms")
        r.problem(
            line,
            "retry.max_backoff_ms",
            f"{retry.max_backoff_ms} is below retry.initial_backoff_ms "
            f"({retry.initial_backoff_ms}); make it at least as large",
        )
    return retry


def _databases(r: _Reader, node: Node | None, has_sources: bool) -> dict[str, DatabaseConfig]:
    example = f"databases: {{warehouse: {{url: '{EXAMPLE_URL}'}}}}"
    if node is None:
        # A daemon that only captures (`syncd run --only capture`) needs no target.
        if not has_sources:
            r.problem(None, "databases", f"missing; name at least one target, e.g. {example}")
        return {}
    entries = node.mapping
    if not entries:
        r.problem(
            node.line,
            "databases",
            f"expected at least one target like {example}, found {node.describe()}",
        )
        return {}
    databases: dict[str, DatabaseConfig] = {}
    for name, entry in entries.items():
        database = _database(r, name, entry)
        if database is not None:
            databases[name] = database
    return databases


def _database(r: _Reader, name: str, node: Node) -> DatabaseConfig | None:
    path = f"databases.{name}"
    entries = node.mapping
    if entries is None:
        r.problem(
            node.line,
            path,
            f"expected {{url: '{EXAMPLE_URL}'}} (and optionally "
            f"password or password_file), found {node.describe()}",
        )
        return None
    r.check_keys(entries, path, DATABASE_KEYS)
    url = _url_with_secret(r, node, entries, path, EXAMPLE_URL)
    if url is None:
        return None
    return DatabaseConfig(name=name, url=url.render_as_string(hide_password=False))


def _url_with_secret(
    r: _Reader, node: Node, entries: dict[str, Node], path: str, example: str
) -> URL | None:
    """``url`` with ``password`` or ``password_file`` filled in; relative SQLite files anchored."""
    url: URL | None = r.scalar(entries, path, "url", _database_url, None)
    password = r.secret(
        entries,
        path,
        r.scalar(entries, path, "password", _text, None),
        r.scalar(entries, path, "password_file", _text, None),
    )
    if url is None:
        if "url" not in entries:
            r.problem(node.line, f"{path}.url", f"missing; write url: '{example}'")
        return None
    if password is not None and url.password is not None:
        r.problem(
            r.line_of(entries, "url"),
            path,
            "the url already has a password; remove it from the url or remove "
            "password/password_file",
        )
    if password is not None:
        url = url.set(password=password)
    return _absolute_sqlite(url, r.base_dir)


def _sources(r: _Reader, node: Node | None, queue_prefix: str) -> dict[str, SourceConfig]:
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


def _source(r: _Reader, name: str, node: Node, queue_prefix: str) -> SourceConfig | None:
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
    url = _url_with_secret(r, node, entries, path, EXAMPLE_SOURCE_URL)
    capture = r.scalar(entries, path, "capture", _capture_mode, None)
    if capture is None and "capture" not in entries:
        r.problem(node.line, f"{path}.capture", "missing; write capture: logical or outbox")
    tables = _source_tables(r, entries.get("tables"), node.line, path)
    queue = r.scalar(entries, path, "queue", _queue, queue_prefix + name)
    batch_events = r.scalar(
        entries, path, "batch_events", _whole(1, 100_000), SOURCE_DEFAULTS["batch_events"]
    )
    if (
        url is None
        or capture is None
        or not tables
        or not _readable(r, path, entries, url, capture)
    ):
        return None
    return SourceConfig(name, url, capture, tables, queue, batch_events)


def _readable(r: _Reader, path: str, entries: dict[str, Node], url: URL, capture: str) -> bool:
    """Whether ``capture`` can read ``url``'s kind of database (a problem if not)."""
    backends, described = CAPTURE_BACKENDS[capture]
    if url.get_backend_name() in backends:
        return True
    instead = f"a URL such as '{EXAMPLE_SOURCE_URL}'"
    if capture == "logical":
        instead += ", or capture: outbox"
    r.problem(
        r.line_of(entries, "url"),
        f"{path}.url",
        f"capture: {capture} reads {described} only, not {url.get_backend_name()}; write {instead}",
    )
    return False


def _source_tables(r: _Reader, node: Node | None, line: int, path: str) -> tuple[str, ...]:
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
        except _Invalid as exc:
            r.problem(item.line, f"{path}[{index}]", f"expected {exc}, found {item.describe()}")
            continue
        if table in tables:
            r.problem(item.line, f"{path}[{index}]", f"{table} is listed twice; keep one")
            continue
        tables.append(table)
    return tuple(tables) if len(tables) == len(items) else ()


def _absolute_sqlite(url: URL, base_dir: Path) -> URL:
    """Anchor a relative SQLite file to the config's directory, not to wherever syncd started."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if database.startswith("file:"):
        return url  # a SQLite URI filename: left as written
    file = Path(database).expanduser()
    return url if file.is_absolute() else url.set(database=str(base_dir / file))


_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\s]+)):(?P<port>\d+)$")


def _hosts(r: _Reader, node: Node | None) -> tuple[tuple[str, int], ...]:
    """Broker addresses in failover order; "a:1,b:2" in one string (handy in ${VAR}) is two."""
    if node is None or node.value is None:
        return tuple(h for h in map(_host_port, DEFAULTS["broker"]["hosts"]) if h is not None)
    items = [node] if isinstance(node.value, str) else node.sequence
    if not items:
        r.problem(
            node.line,
            "broker.hosts",
            f"expected a list of 'host:port' such as ['127.0.0.1:61613'], found {node.describe()}",
        )
        return ()
    hosts: list[tuple[str, int]] = []
    for index, item in enumerate(items):
        path = f"broker.hosts[{index}]" if node.sequence is not None else "broker.hosts"
        expanded = r.expand(item, path)
        value = expanded[0] if expanded is not None else ""
        for part in value.split(",") if isinstance(value, str) else [value]:
            host = _host_port(part) if isinstance(part, str) else None
            if host is not None:
                hosts.append(host)
            elif expanded is not None:
                r.problem(
                    item.line,
                    path,
                    f"expected 'host:port' such as '127.0.0.1:61613', found {describe(part)}",
                )
    return tuple(hosts)


def _host_port(text: str) -> tuple[str, int] | None:
    match = _HOST_PORT.match(text.strip())
    if match is None or not 1 <= int(match["port"]) <= 65535:
        return None
    return match["ipv6"] or match["host"], int(match["port"])


# --- ${VAR} expansion ---------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$(?:\$|\{(?P<body>[^}]*)\}|(?P<unclosed>\{))")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` (a literal ``$``) in ``text``.

    Returns the expanded text and a message for each reference that cannot be expanded. As in a
    shell, ``${VAR:-default}`` uses the default when VAR is unset or empty. A ``$`` followed by
    anything else is kept as it is, so a password like ``pa$word`` needs no escaping.
    """
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        body = match["body"]
        if match[0] == "$$":
            return "$"
        if body is None:
            errors.append("'${' is not closed; write ${NAME}, or $$ for a literal $")
            return match[0]
        name, has_default, default = body.partition(":-")
        if not _VARIABLE.fullmatch(name):
            errors.append(
                f"'{match[0]}' is not a variable reference; write ${{NAME}} with "
                "letters, digits and _, or $$ for a literal $"
            )
            return match[0]
        value = environ.get(name)
        if has_default and not value:
            return default
        if value is None:
            errors.append(
                f"environment variable {name} is not set; set it or write ${{{name}:-default}}"
            )
            return ""
        return value

    return _REFERENCE.sub(replace, text), errors


# --- value rules --------------------------------------------------------------------------------
# A rule turns one expanded scalar into its typed value or raises _Invalid("what is allowed").
# `from_env` says the text came from ${VAR}: environment variables are always text, so a
# number written as ${PREFETCH:-1000} must be accepted as one.


class _Invalid(Exception):
    pass


Rule = Callable[[object, bool], Any]


def _whole(low: int, high: int | None = None) -> Rule:
    expected = (
        f"a whole number from {low} to {high}"
        if high is not None
        else f"a whole number of at least {low}"
    )

    def rule(value: object, from_env: bool) -> int:
        if isinstance(value, str) and from_env and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(expected)
        if value < low or (high is not None and value > high):
            raise _Invalid(expected)
        return value

    return rule


def _seconds(value: object, from_env: bool) -> float:
    expected = "a number of seconds above 0, such as 10 or 2.5"
    if isinstance(value, str) and from_env:
        try:
            value = float(value)
        except ValueError:
            raise _Invalid(expected) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _Invalid(expected)
    return float(value)


def _text(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not value:
        hint = "; put it in quotes" if isinstance(value, int | float) else ""
        raise _Invalid(f"non-empty text{hint}")
    return value


def _log_format(value: object, from_env: bool) -> str:
    if value not in ("text", "json"):
        raise _Invalid("text or json")
    return str(value)


def _listen(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or _host_port(value) is None:
        raise _Invalid("an address to listen on, 'host:port', such as 127.0.0.1:9464")
    return value


def _queue(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not value.startswith("/queue/") or " " in value:
        raise _Invalid("a queue name starting with /queue/, such as /queue/syncd.DLQ")
    return value


def _table_name(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\w+(\.\w+)?", value, re.ASCII):
        raise _Invalid(
            "a table name such as syncd_positions or schema.syncd_positions (letters, digits and _)"
        )
    return value


def _capture_mode(value: object, from_env: bool) -> str:
    if value not in CAPTURE_BACKENDS:
        raise _Invalid(
            "logical (PostgreSQL logical decoding) or outbox (triggers and an outbox table)"
        )
    return str(value)


def _source_table(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\w+(\.\w+)?", value, re.ASCII):
        raise _Invalid("a table name such as public.customers or customers (letters, digits, _)")
    return value


def _log_level(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise _Invalid(f"one of {', '.join(LOG_LEVELS)}")
    return value.lower()


def _database_url(value: object, from_env: bool) -> URL:
    expected = f"a SQLAlchemy URL such as '{EXAMPLE_URL}'"
    if not isinstance(value, str):
        raise _Invalid(expected)
    try:
        return make_url(value)
    except ArgumentError:
        raise _Invalid(expected) from None


RULES: dict[str, dict[str, Rule]] = {
    "broker": {
        "user": _text,
        "password": _text,
        "password_file": _text,
        "heartbeat_ms": _whole(0, 3_600_000),  # 0 turns STOMP heart-beating off
        "connect_timeout_s": _seconds,
        "receipt_timeout_s": _seconds,
        "prefetch": _whole(1, 65535),
        "queue_prefix": _queue,
        "dead_letter_queue": _queue,
        "publish_batch_events": _whole(1, 100_000),
    },
    "apply": {
        "batch_max_messages": _whole(1, 100_000),
        "batch_linger_ms": _whole(0, 60_000),
        "positions_table": _table_name,
        "timeout_s": _seconds,
        "max_deliveries": _whole(2, 1000),
    },
    "retry": {
        "attempts": _whole(1, 1000),
        "initial_backoff_ms": _whole(1),
        "max_backoff_ms": _whole(1),
        "max_elapsed_s": _seconds,
    },
    "logging": {
        "level": _log_level,
        "format": _log_format,
    },
    "metrics": {
        "listen": _listen,
    },
}
# Never echo these back in a message: they may hold a secret.
_SECRET_KEYS = frozenset({"password", "url"})


class _Reader:
    """Reads one config file's nodes into typed values, collecting every problem on the way."""

    def __init__(self, file: str, base_dir: Path, environ: Mapping[str, str]):
        self.file = file
        self.base_dir = base_dir
        self.environ = environ
        self.problems: list[Problem] = []

    def problem(self, line: int | None, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, f"{path}: {message}" if path else message))

    def root(self, root: Node | None) -> dict[str, Node] | None:
        """The top-level settings, or None (and a problem) when the file holds none."""
        items = root.mapping if root is not None else None
        if items is None:
            found = "an empty file" if root is None else root.describe()
            self.problem(
                root.line if root else None,
                "",
                "expected settings such as "
                f"'databases:' and 'broker:' at the top level, found {found}",
            )
            return None
        self.check_keys(items, "", list(DEFAULTS))
        return items

    def entries(self, items: dict[str, Node], section: str) -> dict[str, Node]:
        """The entries of a section; an empty or commented-out section counts as none."""
        node = items.get(section)
        return (node.mapping or {}) if node is not None else {}

    def section(self, items: dict[str, Node], section: str) -> dict[str, Any]:
        """A section's scalar settings, typed and with defaults filled in."""
        node = items.get(section)
        if node is not None and node.value is not None and node.mapping is None:
            self.problem(
                node.line,
                section,
                f"expected a mapping of settings "
                f"({', '.join(DEFAULTS[section])}), found {node.describe()}",
            )
        entries = self.entries(items, section)
        self.check_keys(entries, section, list(DEFAULTS[section]))
        return {
            key: self.scalar(entries, section, key, rule, DEFAULTS[section][key])
            for key, rule in RULES[section].items()
        }

    def check_keys(
        self, entries: dict[str, Node], path: str, allowed: list[str] | tuple[str, ...]
    ) -> None:
        for key, node in entries.items():
            if key not in allowed:
                self.problem(node.line, _join(path, key), unknown_key(key, allowed))

    def scalar(
        self, entries: dict[str, Node], path: str, key: str, rule: Rule, default: Any
    ) -> Any:
        """The value of ``key`` checked by ``rule``; ``default`` when absent, null or wrong."""
        node = entries.get(key)
        if node is None or node.value is None:
            return default
        full = _join(path, key)
        expanded = self.expand(node, full)
        if expanded is None:
            return default
        value, from_env = expanded
        try:
            return rule(value, from_env)
        except _Invalid as exc:
            found = _kind(value) if key in _SECRET_KEYS else describe(value)
            self.problem(node.line, full, f"expected {exc}, found {found}")
            return default

    def expand(self, node: Node, path: str) -> tuple[object, bool] | None:
        """The node's value with ``${VAR}`` expanded, and whether it contained a reference.

        None when a reference cannot be expanded (the problem is reported here), so that callers
        do not pile a second, confusing problem about the half-expanded text on top.
        """
        if not isinstance(node.value, str):
            return node.value, False
        text, errors = expand_env(node.value, self.environ)
        for error in errors:
            self.problem(node.line, path, error)
        return None if errors else (text, "${" in node.value)

    def secret(
        self, entries: dict[str, Node], path: str, password: str | None, password_file: str | None
    ) -> str | None:
        if password is not None and password_file is not None:
            self.problem(
                self.line_of(entries, "password_file"),
                path,
                "both password and password_file are set; keep one of them",
            )
            return None
        if password_file is None:
            return password
        return self.read_secret(Path(password_file), entries, f"{path}.password_file")

    def read_secret(self, file: Path, entries: dict[str, Node], path: str) -> str | None:
        file = self.base_dir / file.expanduser()
        line = self.line_of(entries, "password_file")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problem(line, path, f"cannot read password file {file}: {reason}")
            return None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            # An empty secret file is nearly always a failed provisioning step; connecting
            # without a password would only fail later with a less helpful message.
            self.problem(line, path, f"password file {file} is empty")
            return None
        return text

    def line_of(self, entries: dict[str, Node], key: str) -> int | None:
        node = entries.get(key)
        return node.line if node is not None else None


def _by_line(problem: Problem) -> int:
    """Sort key that lists problems from the top of the file down, as a reader fixes them."""
    return problem.line or 0


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    """Describe a value by its kind only, for settings that may hold a secret."""
    if isinstance(value, str):
        return "text that is not shown here, as it may hold a secret"
    return "a number" if isinstance(value, int | float) else describe(value)
