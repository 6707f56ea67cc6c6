"""The type tables: which target column type holds what a source column sends, exactly.

A source column is known by the SQL type its database declares (PostgreSQL's ``format_type``
text — ``numeric(12,2)``, ``timestamp with time zone``, ``integer[]`` —, SQLite's declared
type, MariaDB/MySQL's ``COLUMN_TYPE``). :func:`target_type` gives the DDL type of the target
column for it, per target dialect (``postgresql``, ``sqlite``, ``mysql``), or raises
:class:`NoSafeType` saying why none holds every value the captures send. The choices follow
what each applier writes exactly (README "Types"): SQLite keeps every digit of a numeric only
in a TEXT column, MariaDB gets a zoned timestamp as its UTC wall time, and so on.

:func:`json_type` is the fallback for a published event that declares no types: a safe type
for the JSON value it carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from syncd.errors import SyncdError

DIALECTS = ("postgresql", "sqlite", "mysql")
DIALECT_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MariaDB/MySQL"}

# MariaDB/MySQL: InnoDB indexes at most 3,072 bytes of a key; utf8mb4 takes 4 per character.
MYSQL_KEY_BYTES = 3072
MYSQL_DECIMAL_MAX = (65, 30)  # precision, scale


class NoSafeType(SyncdError):
    """No column type of the target holds every value of the source type; the text says why
    and what to do instead."""


@dataclass(frozen=True)
class SqlType:
    """A source type taken apart: ``timestamp(3) with time zone`` is name ``timestamp with time
    zone``, args ``(3,)``; ``integer[]`` is name ``integer``, array True."""

    text: str  # as the source declared it
    name: str  # lower case, without arguments or array brackets
    args: tuple[int, ...] = ()
    array: bool = False

    @property
    def kind(self) -> str:
        """One of KINDS' values, or "" for a type this table does not know."""
        return KINDS.get(self.name, "")


_PARTS = re.compile(
    r"^\s*(?P<head>[a-z_ \"]+?)\s*(?:\((?P<args>[0-9,\s]*)\))?"
    r"(?P<tail>(?:\s+(?:unsigned|zerofill|with(?:out)?\s+time\s+zone))*)\s*(?P<array>(?:\[\])*)\s*$",
    re.IGNORECASE,
)


def parse(text: str) -> SqlType:
    """``text`` taken apart; an odd one (a user-defined type) keeps its whole text as name."""
    found = _PARTS.match(text)
    if found is None:
        return SqlType(text, text.strip().lower())
    name = " ".join((found["head"] + found["tail"]).lower().split())
    args = tuple(int(a) for a in (found["args"] or "").split(",") if a.strip())
    return SqlType(text, name, args, bool(found["array"]))


# Source type name -> kind. PostgreSQL's names as format_type writes them, SQLite's and
# MariaDB's declared names; SQLite's type names follow its affinity rules (datatype3.html)
# only as far as the captures send them.
KINDS: dict[str, str] = {
    "smallint": "int16", "int2": "int16", "tinyint": "int16", "tinyint unsigned": "int16",
    "smallint unsigned": "int32", "mediumint": "int32", "mediumint unsigned": "int32",
    "integer": "int32", "int": "int32", "int4": "int32",
    "int unsigned": "int64", "integer unsigned": "int64",
    "bigint": "int64", "int8": "int64", "bigint unsigned": "numeric",
    "numeric": "numeric", "decimal": "numeric", "decimal unsigned": "numeric",
    "real": "float32", "float4": "float32", "float": "float32",
    "double precision": "float64", "float8": "float64", "double": "float64",
    "boolean": "bool", "bool": "bool",
    "text": "text", "character varying": "varchar", "varchar": "varchar",
    "character": "char", "char": "char", "\"char\"": "char", "name": "text", "citext": "text",
    "tinytext": "text", "mediumtext": "text", "longtext": "text", "clob": "text",
    "bytea": "bytes", "blob": "bytes", "longblob": "bytes", "mediumblob": "bytes",
    "tinyblob": "bytes", "varbinary": "bytes", "binary": "bytes",
    "date": "date",
    "time without time zone": "time", "time": "time",
    "time with time zone": "timetz",
    "timestamp without time zone": "timestamp", "timestamp": "timestamp",
    "datetime": "timestamp",
    "timestamp with time zone": "timestamptz",
    "interval": "interval",
    "json": "json", "jsonb": "jsonb",
    "uuid": "uuid",
    "inet": "shorttext", "cidr": "shorttext", "macaddr": "shorttext", "macaddr8": "shorttext",
    "money": "shorttext", "pg_lsn": "shorttext", "oid": "int64",
    "bit": "longtext", "bit varying": "longtext", "xml": "longtext", "tsvector": "longtext",
    "tsquery": "longtext", "point": "longtext", "line": "longtext", "lseg": "longtext",
    "box": "longtext", "path": "longtext", "polygon": "longtext", "circle": "longtext",
    "int4range": "longtext", "int8range": "longtext", "numrange": "longtext",
    "tsrange": "longtext", "tstzrange": "longtext", "daterange": "longtext",
}  # fmt: skip

# PostgreSQL types a PostgreSQL target declares exactly as the source did (its built-in ones;
# a user-defined type may not exist on the target).
_PG_BUILTIN = {name for name in KINDS if name not in {"citext"}} - {
    "tinyint", "tinyint unsigned", "smallint unsigned", "mediumint", "mediumint unsigned",
    "int", "int unsigned", "integer unsigned", "bigint unsigned", "decimal unsigned",
    "float", "double", "tinytext", "mediumtext", "longtext", "clob", "blob", "longblob",
    "mediumblob", "tinyblob", "varbinary", "binary", "datetime", "char", "varchar",
}  # fmt: skip


def target_type(source: str, source_dialect: str, target_dialect: str, key_columns: int = 0) -> str:
    """The target column type (DDL text) that holds every value of ``source``.

    ``key_columns``: the number of columns of the primary key this column is part of (0: not
    a key column) — MariaDB indexes text only up to a length. Raises NoSafeType.
    """
    sql = parse(source)
    if target_dialect == "postgresql":
        return _postgresql(sql, source_dialect)
    if sql.array:
        if target_dialect == "sqlite":
            return "TEXT"  # its text form, as it came
        raise NoSafeType(
            f"{source}: MariaDB/MySQL has no array type, and logical capture sends an array as "
            "PostgreSQL's text ({1,2}) where the outbox sends JSON ([1,2])"
        )
    kind = sqlite_kind(sql) if source_dialect == "sqlite" else sql.kind
    if not kind:
        raise NoSafeType(f"{source}: a type syncd does not know (user-defined, or an extension's)")
    if target_dialect == "sqlite":
        return _SQLITE[kind]
    return _mysql(sql, kind, key_columns)


def sqlite_kind(sql: SqlType) -> str:
    """A SQLite column's kind by the declared type's affinity (sqlite.org/datatype3.html
    3.1), with the names that say more first: BOOLEAN, DATE…, JSON."""
    name = sql.name.upper()
    if sql.kind in ("bool", "date", "timestamp", "json"):
        return sql.kind
    if "INT" in name:
        return "int64"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not name or "BLOB" in name:
        return "text" if not name else "bytes"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "float64"
    return "numeric"


def _postgresql(sql: SqlType, source_dialect: str) -> str:
    if source_dialect == "postgresql":
        if sql.name in _PG_BUILTIN:
            # parse() matched the whole text: known words, digits and brackets only.
            return " ".join(sql.text.split())
        raise NoSafeType(
            f"{sql.text}: not a built-in PostgreSQL type, so the target may not have it"
        )
    kind = sqlite_kind(sql) if source_dialect == "sqlite" else sql.kind
    if not kind:
        raise NoSafeType(f"{sql.text}: a type syncd does not know")
    if kind == "numeric" and sql.args:
        return f"numeric({','.join(map(str, sql.args))})"
    if kind in ("varchar", "char") and sql.args:
        return f"{'character varying' if kind == 'varchar' else 'character'}({sql.args[0]})"
    return _POSTGRESQL[kind]


_POSTGRESQL = {
    "int16": "smallint", "int32": "integer", "int64": "bigint", "numeric": "numeric",
    "float32": "real", "float64": "double precision", "bool": "boolean", "text": "text",
    "varchar": "text", "char": "text", "shorttext": "text", "longtext": "text",
    "bytes": "bytea", "date": "date", "time": "time without time zone",
    "timetz": "time with time zone", "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone", "interval": "interval", "json": "json",
    "jsonb": "jsonb", "uuid": "uuid",
}  # fmt: skip

# SQLite: by affinity (sqlite.org/datatype3.html), as README "Types" says each is written.
# A numeric keeps every digit only as TEXT; dates and times are text as they came; json is
# TEXT because JSON's NUMERIC affinity would make the document 2.50 the REAL 2.5.
_SQLITE = {
    "int16": "INTEGER", "int32": "INTEGER", "int64": "INTEGER", "numeric": "TEXT",
    "float32": "REAL", "float64": "REAL", "bool": "BOOLEAN", "text": "TEXT",
    "varchar": "TEXT", "char": "TEXT", "shorttext": "TEXT", "longtext": "TEXT",
    "bytes": "BLOB", "date": "TEXT", "time": "TEXT", "timetz": "TEXT", "timestamp": "TEXT",
    "timestamptz": "TEXT", "interval": "TEXT", "json": "TEXT", "jsonb": "TEXT", "uuid": "TEXT",
}  # fmt: skip

_MYSQL = {
    "int16": "SMALLINT", "int32": "INT", "int64": "BIGINT", "float32": "FLOAT",
    "float64": "DOUBLE", "bool": "BOOLEAN", "date": "DATE", "json": "JSON", "jsonb": "JSON",
    "uuid": "CHAR(36)", "shorttext": "VARCHAR(255)", "interval": "VARCHAR(255)",
    "timetz": "VARCHAR(64)",
}  # fmt: skip


def _mysql(sql: SqlType, kind: str, key_columns: int) -> str:
    if kind in _MYSQL:
        return _MYSQL[kind]
    if kind == "numeric":
        precision, scale = (*sql.args, 0)[:2] if sql.args else (0, 0)
        if sql.args and precision <= MYSQL_DECIMAL_MAX[0] and scale <= MYSQL_DECIMAL_MAX[1]:
            return f"DECIMAL({precision}, {scale})"
        # No precision (any scale), or more than DECIMAL holds: every digit, as text.
        return _mysql_text(key_columns)
    if kind in ("timestamp", "timestamptz", "time"):
        digits = sql.args[0] if sql.args else 6
        return f"{'TIME' if kind == 'time' else 'DATETIME'}({min(digits, 6)})"
    if kind in ("varchar", "char") and sql.args and sql.args[0] <= 255:
        return f"{'VARCHAR' if kind == 'varchar' else 'CHAR'}({sql.args[0]})"
    if kind == "varchar" and sql.args and sql.args[0] <= 16383 and not key_columns:
        return f"VARCHAR({sql.args[0]})"
    if kind == "bytes":
        return f"VARBINARY({MYSQL_KEY_BYTES // key_columns})" if key_columns else "LONGBLOB"
    return _mysql_text(key_columns)


def _mysql_text(key_columns: int) -> str:
    if key_columns:
        return f"VARCHAR({MYSQL_KEY_BYTES // 4 // key_columns})"
    return "LONGTEXT"


# -------------------------------------------------------------- types without a catalog


def json_type(value: Any, target_dialect: str) -> str:
    """A safe target type for a JSON value of an event that declares no types.

    Safe: it holds this value exactly and most values of its kind. A whole number: bigint
    (numeric past 64 bits); another number: numeric (SQLite, MariaDB: text, every digit);
    true/false: boolean; an object or array: jsonb (SQLite text, MariaDB JSON); text and
    null (no value to go by): text.
    """
    if isinstance(value, bool):
        source = "boolean"
    elif isinstance(value, int):
        source = "bigint" if -(2**63) <= value < 2**63 else "numeric"
    elif isinstance(value, float | Decimal):
        source = "numeric"
    elif isinstance(value, dict | list):
        source = "jsonb"
    else:
        source = "text"
    return target_type(source, "postgresql", target_dialect)


def constant_type(value: Any) -> str:
    """The (PostgreSQL-named) type of a ``set:`` constant as YAML gives it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if -(2**63) <= value < 2**63 else "numeric"
    if isinstance(value, float | Decimal):
        return "numeric"
    if isinstance(value, datetime):
        return "timestamp with time zone" if value.tzinfo else "timestamp without time zone"
    if isinstance(value, date):
        return "date"
    return "text"


# `set: {COLUMN: {from: NAME}}`: the type of each kind of event metadata.
METADATA_TYPES = {
    "source_system": "text",
    "source_table": "text",
    "position": "bigint",
    "op": "text",
    "commit_time": "timestamp with time zone",  # UTC ISO 8601 text
}
SOFT_DELETE_TYPE = "timestamp with time zone"  # the source's delete time, UTC


def cast_type(cast: str, source: SqlType | None) -> str:
    """The (PostgreSQL-named) type of a column with ``type: CAST``, given its source type."""
    kind = source.kind if source is not None and not source.array else ""
    if cast == "numeric" and kind == "numeric":
        return source.text if source is not None else "numeric"
    if cast == "timestamp":
        return (
            "timestamp with time zone" if kind == "timestamptz" else "timestamp without time zone"
        )
    return _CASTS[cast]


_CASTS = {
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "float": "double precision",
    "bool": "boolean",
    "date": "date",
    "json": "jsonb",
}
