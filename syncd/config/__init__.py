"""``config.yaml``: loaded once, validated completely, handed out as frozen dataclasses.

Every mistake in the file is collected and raised together in one :class:`ConfigError`, each
naming the file, the line, the key path, what was found and what to write instead, so a sysadmin
fixes the file in one pass. Defaults live in :data:`DEFAULTS` and nowhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import make_url

from syncd.config.drivers import DriverProblem, with_driver
from syncd.config.reader import (
    EXAMPLE_URL,
    Invalid,
    Reader,
    Rule,
    display_url,
    nonempty_text,
    positive_seconds,
    queue_destination,
    url_with_secret,
    whole_number,
)
from syncd.config.reader import expand_env as expand_env
from syncd.config.sources import SOURCE_DEFAULTS as SOURCE_DEFAULTS
from syncd.config.sources import SourceConfig as SourceConfig
from syncd.config.sources import read_sources
from syncd.config.tls import TlsConfig as TlsConfig
from syncd.config.tls import read_tls
from syncd.config.yamlfile import Node, describe, parse_yaml
from syncd.errors import ConfigError, Problem

# Every default in one table; the keys of each section are also the keys it allows.
DEFAULTS: dict[str, Any] = {
    "broker": {
        "hosts": ["127.0.0.1:61613"],  # several: failover in this order
        "user": None,
        "password": None,
        "password_file": None,
        "tls": None,  # {ca_file, cert_file, key_file}: TLS to every host; absent: plain TCP
        "heartbeat_ms": 10_000,
        "connect_timeout_s": 10.0,
        "receipt_timeout_s": 30.0,
        "prefetch": 2000,
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
        # Debezium's unavailable.value.placeholder: a column holding it is left as it is
        "unavailable_placeholder": "__debezium_unavailable_value",
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
TARGET_BACKENDS = ("postgresql", "sqlite", "mysql")  # one module each in syncd/apply/
LOG_LEVELS = ("debug", "info", "warning", "error")


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
    tls: TlsConfig | None = None  # None: plain TCP


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    url: str = field(repr=False)  # SQLAlchemy URL with the password filled in: never log it

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return display_url(make_url(self.url))


@dataclass(frozen=True)
class ApplyConfig:
    batch_max_messages: int
    batch_linger_ms: int
    positions_table: str
    timeout_s: float
    max_deliveries: int
    unavailable_placeholder: str  # Debezium's text for a value it could not read (TOAST)


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

    def exclusive_queues(self) -> frozenset[str]:
        """The queues of sources with ``transactions: atomic``: one consumer at a time each."""
        atomic = [s for s in self.sources.values() if s.atomic]
        return frozenset([s.queue for s in atomic] + [self.queue_for(s.name) for s in atomic])


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
    environ = os.environ if environ is None else environ
    reader = Reader(file, path.absolute().parent, environ, DEFAULTS, RULES)
    reader.problems.extend(problems)
    items = reader.root(root) if root is not None or not problems else None
    if items is None:
        raise ConfigError(reader.problems)
    config = _config(reader, items, path.absolute())
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=_by_line))
    return config


def _config(r: Reader, items: dict[str, Node], path: Path) -> Config:
    mappings = r.scalar(items, "", "mappings", nonempty_text, DEFAULTS["mappings"])
    state_dir = r.scalar(items, "", "state_dir", nonempty_text, DEFAULTS["state_dir"])
    broker = _broker(r, items)
    sources = read_sources(r, items.get("sources"), broker.queue_prefix)
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


def _broker(r: Reader, items: dict[str, Node]) -> BrokerConfig:
    values = r.section(items, "broker")
    entries = r.entries(items, "broker")
    values["hosts"] = _hosts(r, entries.get("hosts"))
    password_file = values.pop("password_file")
    values["password"] = r.secret(entries, "broker", values["password"], password_file)
    values["tls"] = read_tls(r, entries)
    return BrokerConfig(**values)


def _retry(r: Reader, items: dict[str, Node]) -> RetryConfig:
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


def _databases(r: Reader, node: Node | None, has_sources: bool) -> dict[str, DatabaseConfig]:
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


def _database(r: Reader, name: str, node: Node) -> DatabaseConfig | None:
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
    url = url_with_secret(r, node, entries, path, EXAMPLE_URL)
    if url is None:
        return None
    try:
        url = with_driver(url, TARGET_BACKENDS)
    except DriverProblem as exc:
        r.problem(r.line_of(entries, "url"), f"{path}.url", str(exc))
        return None
    return DatabaseConfig(name=name, url=url.render_as_string(hide_password=False))


_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\s]+)):(?P<port>\d+)$")


def _hosts(r: Reader, node: Node | None) -> tuple[tuple[str, int], ...]:
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


# --- value rules --------------------------------------------------------------------------------
# The settings' own rules; the shared ones (numbers, text, queues, URLs) are config.reader's.


def _log_format(value: object, from_env: bool) -> str:
    if value not in ("text", "json"):
        raise Invalid("text or json")
    return str(value)


def _listen(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or _host_port(value) is None:
        raise Invalid("an address to listen on, 'host:port', such as 127.0.0.1:9464")
    return value


def _table_name(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\w+(\.\w+)?", value, re.ASCII):
        raise Invalid(
            "a table name such as syncd_positions or schema.syncd_positions (letters, digits and _)"
        )
    return value


def _log_level(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise Invalid(f"one of {', '.join(LOG_LEVELS)}")
    return value.lower()


RULES: dict[str, dict[str, Rule]] = {
    "broker": {
        "user": nonempty_text,
        "password": nonempty_text,
        "password_file": nonempty_text,
        "heartbeat_ms": whole_number(0, 3_600_000),  # 0 turns STOMP heart-beating off
        "connect_timeout_s": positive_seconds,
        "receipt_timeout_s": positive_seconds,
        "prefetch": whole_number(1, 65535),
        "queue_prefix": queue_destination,
        "dead_letter_queue": queue_destination,
        "publish_batch_events": whole_number(1, 100_000),
    },
    "apply": {
        "batch_max_messages": whole_number(1, 100_000),
        "batch_linger_ms": whole_number(0, 60_000),
        "positions_table": _table_name,
        "timeout_s": positive_seconds,
        "max_deliveries": whole_number(2, 1000),
        "unavailable_placeholder": nonempty_text,
    },
    "retry": {
        "attempts": whole_number(1, 1000),
        "initial_backoff_ms": whole_number(1),
        "max_backoff_ms": whole_number(1),
        "max_elapsed_s": positive_seconds,
    },
    "logging": {
        "level": _log_level,
        "format": _log_format,
    },
    "metrics": {
        "listen": _listen,
    },
}


def _by_line(problem: Problem) -> int:
    """Sort key that lists problems from the top of the file down, as a reader fixes them."""
    return problem.line or 0
