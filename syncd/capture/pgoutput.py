"""Decoding PostgreSQL's built-in ``pgoutput`` plugin messages (protocol version 1).

Pure: the payload bytes of one XLogData message in, one dataclass out; no connection, no
clock. ``syncd.capture.logical`` reads the replication stream and turns these into events.

Tuple values stay as the server's text (or None for SQL NULL, or :data:`UNCHANGED_TOAST` for
a TOASTed value the server did not send) until :meth:`Relation.row` converts them, by type
OID, into JSON-friendly Python values (:func:`convert`).
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from syncd.errors import CaptureError

# pgoutput timestamps count microseconds from 2000-01-01 00:00 UTC, PostgreSQL's epoch.
PG_EPOCH_UNIX_MS = 946_684_800_000

# Type OIDs of the built-in types that do not stay text (pg_type.oid, stable across versions).
BOOL_OID = 16
INT8_OID = 20
INT2_OID = 21
INT4_OID = 23
OID_OID = 26
JSON_OID = 114
FLOAT4_OID = 700
FLOAT8_OID = 701
JSONB_OID = 3802
_INTEGER_OIDS = frozenset({INT2_OID, INT4_OID, INT8_OID, OID_OID})
_FLOAT_OIDS = frozenset({FLOAT4_OID, FLOAT8_OID})

KEY_FLAG = 1  # column flag bit: part of the replica identity (the key)


class MalformedMessage(CaptureError):
    """A pgoutput message this decoder cannot read: the stream is not what protocol 1 says."""


class Unchanged(enum.Enum):
    """Marks a column whose TOASTed value did not change and that the server did not send."""

    TOAST = "u"


UNCHANGED_TOAST = Unchanged.TOAST
TupleValue = str | None | Literal[Unchanged.TOAST]
TupleData = tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """A table as the server describes it, before the first change to it in a session."""

    oid: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    columns: tuple[Column, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.is_key)

    def row(self, values: TupleData, key_only: bool = False) -> dict[str, Any]:
        """Column name -> converted value; unchanged TOASTed columns are left out.

        ``key_only`` keeps the key columns alone: an old-key ('K') tuple carries every
        other column as NULL, which would read as "was NULL" rather than "not sent".
        """
        if len(values) != len(self.columns):
            raise MalformedMessage(
                f"tuple of {len(values)} columns for {self.namespace}.{self.name}, "
                f"which has {len(self.columns)}"
            )
        row: dict[str, Any] = {}
        for column, value in zip(self.columns, values, strict=True):
            if value is UNCHANGED_TOAST or (key_only and not column.is_key):
                continue
            row[column.name] = None if value is None else convert(column.type_oid, value)
        return row


class RelationCache:
    """Relation OID -> :class:`Relation`, as the stream announced them."""

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}

    def add(self, relation: Relation) -> None:
        # A later Relation message for the same OID (after ALTER TABLE) replaces the old one.
        self._relations[relation.oid] = relation

    def get(self, oid: int) -> Relation:
        try:
            return self._relations[oid]
        except KeyError:
            raise MalformedMessage(
                f"change to relation {oid} before its Relation message"
            ) from None


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time_ms: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time_ms: int


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True, slots=True)
class Update:
    relation_oid: int
    old_kind: Literal["K", "O"] | None  # 'K' old key, 'O' old full row, None not sent
    old: TupleData | None
    new: TupleData


@dataclass(frozen=True, slots=True)
class Delete:
    relation_oid: int
    old_kind: Literal["K", "O"]
    old: TupleData


@dataclass(frozen=True, slots=True)
class Truncate:
    options: int  # bit 1: CASCADE, bit 2: RESTART IDENTITY
    relation_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    flags: int
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeInfo
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
)


def convert(type_oid: int, text: str) -> Any:
    """The JSON-friendly value of a column's text form: bool, int, float, or the text.

    numeric stays text (every digit, NaN and ±Infinity as PostgreSQL spells them); a float's
    shortest text round-trips through a Python float exactly. json and jsonb stay their text
    too — a json column's text is the document as written (spacing, key order, duplicate
    keys), which a parsed value would lose — and appliers write a string for a json column
    as the document's text.
    """
    if type_oid == BOOL_OID:
        return text == "t"
    if type_oid in _INTEGER_OIDS:
        return int(text)
    if type_oid in _FLOAT_OIDS:
        number = float(text)
        # JSON has no NaN or Infinity: keep PostgreSQL's spelling rather than emit invalid JSON.
        return number if math.isfinite(number) else text
    return text


def pg_time_to_unix_ms(pg_time_us: int) -> int:
    return pg_time_us // 1000 + PG_EPOCH_UNIX_MS


class _Reader:
    """Big-endian fields from one message, with a clear error when it runs short."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if size < 0 or end > len(self._data):
            raise MalformedMessage(
                f"pgoutput message {self._data[:1]!r} ends after {len(self._data)} bytes, "
                f"wanted {end}"
            )
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def char(self) -> str:
        return self.take(1).decode("ascii")

    def uint8(self) -> int:
        return int(self.unpack(">B"))

    def int16(self) -> int:
        return int(self.unpack(">h"))

    def int32(self) -> int:
        return int(self.unpack(">i"))

    def uint32(self) -> int:
        return int(self.unpack(">I"))

    def int64(self) -> int:
        return int(self.unpack(">q"))

    def uint64(self) -> int:
        return int(self.unpack(">Q"))

    def string(self) -> str:
        end = self._data.find(b"\0", self._offset)
        if end < 0:
            raise MalformedMessage(f"pgoutput message {self._data[:1]!r}: unterminated string")
        text = self._data[self._offset : end].decode("utf-8")
        self._offset = end + 1
        return text


def decode(payload: bytes) -> Message:
    """Decode one pgoutput (protocol 1) message; raises :class:`MalformedMessage`."""
    if not payload:
        raise MalformedMessage("empty pgoutput message")
    reader = _Reader(payload)
    kind = reader.char()
    try:
        decoder = _DECODERS[kind]
    except KeyError:
        raise MalformedMessage(f"unknown pgoutput message type {kind!r}") from None
    return decoder(reader)


def _begin(reader: _Reader) -> Begin:
    final_lsn = reader.uint64()
    commit_time_ms = pg_time_to_unix_ms(reader.int64())
    return Begin(final_lsn, commit_time_ms, reader.uint32())


def _commit(reader: _Reader) -> Commit:
    flags = reader.uint8()
    commit_lsn = reader.uint64()
    end_lsn = reader.uint64()
    return Commit(flags, commit_lsn, end_lsn, pg_time_to_unix_ms(reader.int64()))


def _origin(reader: _Reader) -> Origin:
    return Origin(reader.uint64(), reader.string())


def _relation(reader: _Reader) -> Relation:
    oid = reader.uint32()
    # The namespace is sent empty for pg_catalog.
    namespace = reader.string() or "pg_catalog"
    name = reader.string()
    replica_identity = chr(reader.uint8())
    columns = tuple(_column(reader) for _ in range(reader.int16()))
    return Relation(oid, namespace, name, replica_identity, columns)


def _column(reader: _Reader) -> Column:
    flags = reader.uint8()
    name = reader.string()
    return Column(name, reader.uint32(), reader.int32(), bool(flags & KEY_FLAG))


def _type(reader: _Reader) -> TypeInfo:
    return TypeInfo(reader.uint32(), reader.string() or "pg_catalog", reader.string())


def _insert(reader: _Reader) -> Insert:
    relation_oid = reader.uint32()
    _expect(reader, "N", "Insert")
    return Insert(relation_oid, _tuple(reader))


def _update(reader: _Reader) -> Update:
    relation_oid = reader.uint32()
    kind = reader.char()
    if kind in ("K", "O"):
        old = _tuple(reader)
        _expect(reader, "N", "Update")
        return Update(relation_oid, "K" if kind == "K" else "O", old, _tuple(reader))
    if kind != "N":
        raise MalformedMessage(f"Update: tuple marker {kind!r}, expected K, O or N")
    return Update(relation_oid, None, None, _tuple(reader))


def _delete(reader: _Reader) -> Delete:
    relation_oid = reader.uint32()
    kind = reader.char()
    if kind not in ("K", "O"):
        raise MalformedMessage(f"Delete: tuple marker {kind!r}, expected K or O")
    return Delete(relation_oid, "K" if kind == "K" else "O", _tuple(reader))


def _truncate(reader: _Reader) -> Truncate:
    count = reader.int32()
    options = reader.uint8()
    return Truncate(options, tuple(reader.uint32() for _ in range(count)))


def _message(reader: _Reader) -> LogicalMessage:
    flags = reader.uint8()
    lsn = reader.uint64()
    prefix = reader.string()
    return LogicalMessage(flags, lsn, prefix, reader.take(reader.int32()))


def _expect(reader: _Reader, marker: str, what: str) -> None:
    found = reader.char()
    if found != marker:
        raise MalformedMessage(f"{what}: tuple marker {found!r}, expected {marker!r}")


def _tuple(reader: _Reader) -> TupleData:
    return tuple(_tuple_value(reader) for _ in range(reader.int16()))


def _tuple_value(reader: _Reader) -> TupleValue:
    kind = reader.char()
    if kind == "n":
        return None
    if kind == "u":
        return UNCHANGED_TOAST
    if kind == "t":
        # Text in the connection's client_encoding, which the capture sets to UTF8.
        return reader.take(reader.int32()).decode("utf-8")
    raise MalformedMessage(f"tuple value kind {kind!r}, expected n, u or t")


_DECODERS: dict[str, Callable[[_Reader], Message]] = {
    "B": _begin,
    "C": _commit,
    "O": _origin,
    "R": _relation,
    "Y": _type,
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
    "M": _message,
}
