"""What a value must be to reach a statement: checked where events are decoded and routed.

A hostile or careless publisher can send valid JSON that no target can store. Found by the
driver mid-batch, such a value used to end the apply loop; checked here, it dead-letters its
own event, with a reason naming the column, and the batch goes on.

At decode, for every target (``decode``): lone UTF-16 surrogates anywhere in the event — no
driver can encode them as UTF-8. At routing, per target table (``mapping``): NUL characters
where the target cannot store them (PostgreSQL), integers outside the range of the column or
of the driver, key texts longer than the positions table holds, and column names longer than
the target allows.

Kept nearly free for the common case: a lone surrogate or a NUL can only enter a decoded string
through a ``\\u`` escape (raw UTF-8 cannot encode a surrogate, and strict JSON rejects raw
control characters), so a body without ``\\uD8..\\uDF`` or ``\\u0000`` skips the deep walk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.engine.interfaces import ReflectedColumn

from syncd.errors import DecodeError, MappingApplyError

if TYPE_CHECKING:  # events.py imports this module
    from syncd.events import ChangeEvent
    from syncd.mapping import Mapping

_BOM = "\ufeff"
# The escapes that can decode to a lone surrogate: a high one (\uD800-\uDBFF, either case)
# not followed by a low one (\uDC00-\uDFFF), or a low one not after a high one. A pair is
# one character (an emoji, as json.dumps escapes it) and needs no walk — unless a backslash
# comes before it, which may make its first half plain text ("\\\\ud83d\\ude00"). An escaped
# backslash before "ud800" matches too: a false alarm only costs the walk.
_LONE_SURROGATE = re.compile(
    r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|(?<![^\\]\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD])[c-fC-F])"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
KEY_TEXT_MAX = 650  # characters of the positions table's row_key (see apply/sql.py)


def body_text(body: bytes | str) -> str:
    """The message body as text: UTF-8, as the wire contract says; a leading BOM is ignored.

    RFC 8259 lets a parser ignore a byte order mark, and some publishers write one; a body in
    UTF-16 or UTF-32 is not UTF-8 and fails here (a ``UnicodeError``), not as garbled JSON.
    """
    if isinstance(body, bytes):
        text = body.decode()
    else:
        # Text read with errors="surrogateescape" (a C locale's stdin) carries undecodable
        # bytes as lone surrogates, unescaped, where the pre-scan cannot see them.
        (text := body).encode()
    return text[1:] if text[:1] == _BOM else text


def may_hide_characters(text: str) -> bool:
    """Whether the JSON text has an escape that may decode to a lone surrogate or a NUL.

    Plain substring searches first (C speed, ~0.1 µs a body): most bodies have no ``\\u`` at
    all, and most that do escape only accents (``\\u00e9``).
    """
    if "\\u" not in text:
        return False
    if "\\u0000" in text:
        return True
    if "\\ud" not in text and "\\uD" not in text:
        return False
    return _LONE_SURROGATE.search(text) is not None


def strings_of(document: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a decoded JSON document, keys included, with where it is.

    Iterative: a document nested as deep as the JSON decoder allows must not exhaust the stack.
    """
    stack: list[tuple[str, Any]] = [(where, document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict):
            for key, item in value.items():
                inner = f"{path}.{key}" if path else str(key)
                yield f"{inner} (a name)", key
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def hidden_characters(document: Any) -> tuple[str, ...]:
    """Where ``document`` holds NUL characters; DecodeError at its first lone surrogate.

    Call it only for bodies where :func:`may_hide_characters` is true.
    """
    nul_at: list[str] = []
    for path, text in strings_of(document):
        if _SURROGATE.search(text):
            raise DecodeError(
                f"{printable(path)} holds a lone UTF-16 surrogate ({printable(text, 40)}): "
                "it is not a character, and no target can store it"
            )
        if "\x00" in text:
            nul_at.append(path)
    return tuple(nul_at)


def printable(text: str, limit: int = 100) -> str:
    """``text`` safe for a log line or a STOMP header: surrogates and controls escaped."""
    shown = ascii(text[:limit])[1:-1] if not text.isprintable() else text[:limit]
    return shown + ("…" if len(text) > limit else "")


# -- per target table --------------------------------------------------------------------

INT64 = (-(2**63), 2**63 - 1)
_BITS = ((mysql_types.TINYINT, 8), (mysql_types.MEDIUMINT, 24), (sa.SmallInteger, 16))


def integer_range(column_type: Any, dialect: str) -> tuple[int, int] | None:
    """The integers a column of this reflected type holds; None for a column of another kind.

    None for SQLite: it holds every value in some form, whatever a column is called, and its
    applier binds what sqlite3 cannot (wider integers, NaN) as README "Types" says
    (``syncd.apply.sqlite.binder``).
    """
    if not isinstance(column_type, sa.Integer) or dialect == "sqlite":
        return None
    bits = next((b for kind, b in _BITS if isinstance(column_type, kind)), None)
    if bits is None:
        bits = 64 if isinstance(column_type, sa.BigInteger) else 32
    if getattr(column_type, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class TargetLimits:
    """What one target table can store, from its dialect and its reflected columns."""

    dialect: str  # postgresql, sqlite or mysql
    integer_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def reflected(cls, dialect: str, columns: Iterable[ReflectedColumn]) -> TargetLimits:
        ranges = {c["name"]: r for c in columns if (r := integer_range(c["type"], dialect))}
        return cls(dialect, ranges)

    @property
    def stores_nul(self) -> bool:
        # PostgreSQL text, varchar and jsonb cannot hold U+0000 (json columns are treated
        # alike); SQLite and MariaDB store it as any other character.
        return self.dialect != "postgresql"

    def row_problem(self, row: dict[str, Any]) -> str | None:
        """Why this table cannot hold ``row``, naming the column; None if it can."""
        for column, (low, high) in self.integer_ranges.items():
            value = row.get(column)
            if type(value) is int:  # the common case, without the checks below
                if low <= value <= high:
                    continue
            elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                continue  # NULL, or text and the like: the target's own cast decides
            elif _finite(value) and low <= value <= high:
                continue
            return _out_of_range(column, value, low, high)
        return None

    def identifier_problem(self, name: str) -> str | None:
        """Why ``name`` cannot be a column of this target, if it cannot."""
        if self.dialect == "postgresql" and len(name.encode("utf-8", "surrogatepass")) > 63:
            # PostgreSQL would cut it to 63 bytes, silently, and so name another column.
            return "is longer than PostgreSQL's 63 bytes"
        if self.dialect == "mysql" and len(name) > 64:
            return "is longer than MariaDB's 64 characters"
        if "\x00" in name:
            return "holds a NUL character"
        return None


def _out_of_range(column: str, value: Any, low: int, high: int) -> str:
    return (
        f"column {printable(column)}: {printable(str(value), 40)} does not fit "
        f"(the target holds integers from {low} to {high})"
    )


def _finite(value: int | float | Decimal) -> bool:
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, int) or math.isfinite(value)


def check_change(
    limits: TargetLimits | None,
    mapping: Mapping,
    event: ChangeEvent,
    key: str,
    row: dict[str, Any] | None,
) -> None:
    """MappingApplyError if this change holds what its target table cannot store.

    ``row``: the target row of an upsert, None for a delete (whose key alone is written).
    Under a microsecond for a clean row: the reason is only written when there is one.
    """
    if len(key) > KEY_TEXT_MAX:
        raise MappingApplyError(
            f"{_where(mapping, key)}: the key's text is {len(key)} characters, longer than the "
            f"{KEY_TEXT_MAX} the positions table holds"
        )
    if limits is None:
        return
    if event.nul_at and not limits.stores_nul:
        stored = _nul_stored(mapping, event.nul_at, row is not None)
        if stored:
            raise MappingApplyError(
                f"{_where(mapping, key)}: {printable(stored)} holds a NUL character (U+0000), "
                f"which {limits.dialect} text cannot store"
            )
    if row:
        problem = limits.row_problem(row)
        if problem:
            raise MappingApplyError(f"{_where(mapping, key)}: {problem}")


def _where(mapping: Mapping, key: str) -> str:
    return f"mapping {mapping.name} key {printable(key, 200)}"


def _nul_stored(mapping: Mapping, nul_at: tuple[str, ...], upsert: bool) -> str | None:
    """The first place in ``nul_at`` whose text would be written: a carried column, the key
    (in the positions table too) or the event id."""
    carried = None if mapping.columns is None else {c.source for c in mapping.columns}
    for path in nul_at:
        if path == "id":
            return "the event id"
        section, _, rest = path.partition(".")
        if section not in ("after", "before") or not rest:
            continue
        if section == "after" and upsert and carried is None:
            return path
        columns = mapping.key if section == "before" or not upsert else carried or ()
        if any(_under(rest, column) for column in columns):
            return path
    return None


def _under(path: str, column: str) -> bool:
    """Whether ``path`` (below after/before) is the column, its name, or inside its value."""
    if not path.startswith(column):
        return False
    tail = path[len(column) :]
    return not tail or tail[0] in ".[" or tail == " (a name)"
