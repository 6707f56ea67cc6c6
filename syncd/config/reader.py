"""Reading config.yaml's nodes into typed values: ``${VAR}`` expansion, value rules, and the
:class:`Reader` that applies them and collects every problem with its file and line.

What the settings are — their defaults, their rules and their sections — is
:mod:`syncd.config`'s (and :mod:`syncd.config.sources`' for ``sources:``); this module only
knows how to read one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from syncd.config.yamlfile import Node, describe, unknown_key
from syncd.errors import Problem

EXAMPLE_URL = "postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse"

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
# A rule turns one expanded scalar into its typed value or raises Invalid("what is allowed").
# `from_env` says the text came from ${VAR}: environment variables are always text, so a
# number written as ${PREFETCH:-1000} must be accepted as one.


class Invalid(Exception):
    pass


Rule = Callable[[object, bool], Any]


def whole_number(low: int, high: int | None = None) -> Rule:
    expected = (
        f"a whole number from {low} to {high}"
        if high is not None
        else f"a whole number of at least {low}"
    )

    def rule(value: object, from_env: bool) -> int:
        if isinstance(value, str) and from_env and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(expected)
        if value < low or (high is not None and value > high):
            raise Invalid(expected)
        return value

    return rule


def positive_seconds(value: object, from_env: bool) -> float:
    expected = "a number of seconds above 0, such as 10 or 2.5"
    if isinstance(value, str) and from_env:
        try:
            value = float(value)
        except ValueError:
            raise Invalid(expected) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise Invalid(expected)
    return float(value)


def nonempty_text(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not value:
        hint = "; put it in quotes" if isinstance(value, int | float) else ""
        raise Invalid(f"non-empty text{hint}")
    return value


def queue_destination(value: object, from_env: bool) -> str:
    if not isinstance(value, str) or not value.startswith("/queue/") or " " in value:
        raise Invalid("a queue name starting with /queue/, such as /queue/syncd.DLQ")
    return value


def database_url(value: object, from_env: bool) -> URL:
    expected = f"a SQLAlchemy URL such as '{EXAMPLE_URL}'"
    if not isinstance(value, str):
        raise Invalid(expected)
    try:
        return make_url(value)
    except (ArgumentError, ValueError):
        # ValueError: a port that is not a number. Neither is echoed: the URL may hold a password.
        raise Invalid(expected) from None


# Never echo these back in a message: they may hold a secret.
_SECRET_KEYS = frozenset({"password", "url"})


class Reader:
    """Reads one config file's nodes into typed values, collecting every problem on the way.

    ``defaults`` and ``rules`` are the settings' table (``syncd.config.DEFAULTS`` and
    ``RULES``): the top-level keys, and per section its keys, defaults and value rules.
    """

    def __init__(
        self,
        file: str,
        base_dir: Path,
        environ: Mapping[str, str],
        defaults: Mapping[str, Any],
        rules: Mapping[str, Mapping[str, Rule]],
    ):
        self.file = file
        self.base_dir = base_dir
        self.environ = environ
        self.defaults = defaults
        self.rules = rules
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
        self.check_keys(items, "", list(self.defaults))
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
                f"({', '.join(self.defaults[section])}), found {node.describe()}",
            )
        entries = self.entries(items, section)
        self.check_keys(entries, section, list(self.defaults[section]))
        return {
            key: self.scalar(entries, section, key, rule, self.defaults[section][key])
            for key, rule in self.rules[section].items()
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
        except Invalid as exc:
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


def url_with_secret(
    r: Reader, node: Node, entries: dict[str, Node], path: str, example: str
) -> URL | None:
    """``url`` with ``password`` or ``password_file`` filled in; relative SQLite files anchored."""
    url: URL | None = r.scalar(entries, path, "url", database_url, None)
    password = r.secret(
        entries,
        path,
        r.scalar(entries, path, "password", nonempty_text, None),
        r.scalar(entries, path, "password_file", nonempty_text, None),
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
    pitfall = _tls_pitfall(url)
    if pitfall is not None:
        r.problem(r.line_of(entries, "url"), f"{path}.url", pitfall)
    return _absolute_tls_files(_absolute_sqlite(url, r.base_dir), r.base_dir)


def _absolute_sqlite(url: URL, base_dir: Path) -> URL:
    """Anchor a relative SQLite file to the config's directory, not to wherever syncd started."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if database.startswith("file:"):
        return url  # a SQLite URI filename: left as written
    file = Path(database).expanduser()
    return url if file.is_absolute() else url.set(database=str(base_dir / file))


# The URL query's file settings for TLS: libpq's (PostgreSQL) and PyMySQL's. A relative one is
# anchored to the config's directory like every other path in the file; libpq alone would read
# it from wherever syncd was started (and from two places, for capture's two connections).
TLS_FILE_KEYS = frozenset(
    {"sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "ssl_ca", "ssl_cert", "ssl_key"}
)
# libpq's sslrootcert=system means the operating system's CAs, not a file named "system".
_NOT_A_FILE = frozenset({"system"})
# Query settings that hold a secret: libpq's password and sslpassword (the client key's
# passphrase), PyMySQL's passwd. display_url masks them like the URL's own password.
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "sslpassword"})


def _absolute_tls_files(url: URL, base_dir: Path) -> URL:
    anchored = {
        key: str(base_dir / Path(value).expanduser())
        for key, value in url.query.items()
        if key in TLS_FILE_KEYS and isinstance(value, str) and value and value not in _NOT_A_FILE
    }
    return url.update_query_dict(anchored) if anchored else url


def _tls_pitfall(url: URL) -> str | None:
    """What is wrong with a URL whose TLS settings would not do what they say, if anything.

    SQLAlchemy hands PyMySQL ``ssl_ca``/``ssl_cert``/``ssl_key`` as its ``ssl`` settings, but
    ``ssl_verify_cert``/``ssl_verify_identity`` as keywords of their own, and PyMySQL lets those
    keywords replace the ``ssl`` settings: the CA is dropped and no host name is checked.
    """
    if url.get_backend_name() not in ("mysql", "mariadb"):
        return None
    overriding = sorted(
        key for key in url.query if key in ("ssl_verify_cert", "ssl_verify_identity")
    )
    if not overriding:
        return None
    return (
        f"{' and '.join(overriding)} would make PyMySQL ignore ssl_ca and check no host name; "
        f"remove {'them' if len(overriding) > 1 else 'it'}: ssl_ca=/etc/syncd/tls/ca.pem alone "
        "verifies the certificate and the host name"
    )


def display_url(url: URL) -> str:
    """``url`` for logs and messages: its password and secret query settings masked, and the
    query as written (``?sslmode=verify-full&sslrootcert=/etc/syncd/ca.pem``), not %-encoded.
    """
    shown = url.set(query={}).render_as_string(hide_password=True)
    settings = [
        f"{key}={'***' if key.lower() in SECRET_QUERY_KEYS else value}"
        for key, values in url.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    ]
    return f"{shown}?{'&'.join(settings)}" if settings else shown


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    """Describe a value by its kind only, for settings that may hold a secret."""
    if isinstance(value, str):
        return "text that is not shown here, as it may hold a secret"
    return "a number" if isinstance(value, int | float) else describe(value)
