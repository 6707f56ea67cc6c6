"""Debezium's JSON, decoded as Debezium meant it.

Kafka Connect's JsonConverter with schemas enabled (Debezium's default) sends each change as
``{"schema": …, "payload": …}``: the payload's values are in the converter's wire forms — a
NUMERIC as base64 two's-complement bytes whose scale is in the schema, a DATE as days since
1970, a TIMESTAMP as microseconds — and only the schema says which. Here the schema's field
types decode ``before`` and ``after`` into the values every target writes exactly:

=============================================  =================================================
schema type (``name``, else ``type``)          value
=============================================  =================================================
``org.apache.kafka.connect.data.Decimal``      exact decimal text, the scale's zeros kept
``io.debezium.data.VariableScaleDecimal``      (``"30.50"``)
``io.debezium.time.Date``, Connect ``Date``    ``"2024-01-15"``
``Time``/``MicroTime``/``NanoTime``, Connect   ``"10:30:00.123456"`` (hours may pass 24: MySQL
``Time``                                       durations)
``Timestamp``/``MicroTimestamp``/              ``"2024-01-15 10:30:00.123456"`` (no zone, as the
``NanoTimestamp``, Connect ``Timestamp``       source column had none)
``ZonedTimestamp``, ``ZonedTime``              the text as sent (:class:`ZonedText`)
``io.debezium.data.Json``                      the document, parsed
``bytes`` (and ``Bits``)                       ``bytes``; inside arrays and structs, base64 text
``Uuid``, ``Xml``, ``Enum``, ``EnumSet``, …    the text as sent
int8…int64, float, double, boolean, string     as sent, type-checked
=============================================  =================================================

The same schema comes with every event, so each schema is compiled once into a decoder and
cached (see :class:`_Cache`). A value that does not fit its schema — a hostile or broken
producer — is a :class:`~syncd.errors.DecodeError` naming the field: the event is dead-lettered
(``decode``), the daemon carries on.

Debezium's placeholder for a value it could not read (``unavailable.value.placeholder``,
``__debezium_unavailable_value``: an unchanged TOASTed column) is never a value: the column is
left out of the row and named in the event's ``unavailable``, so the target keeps what it has.
The connector sends it in the column's own form — text, base64 bytes for a binary column, a
one-element array for text and binary arrays, the placeholder's bytes for integer arrays, a
one-entry map for hstore — and every form is recognised, with or without a schema.

Messages that are not row changes — transaction BEGIN/END metadata, heartbeats, tombstones (a
null value after a delete) and logical-decoding messages (``op: m``) — are recognised by
:func:`skip_reason`: the consumer counts and acknowledges them, nothing is dead-lettered.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from hashlib import md5
from typing import Any

from syncd.errors import DecodeError

PLACEHOLDER = "__debezium_unavailable_value"  # Debezium's default unavailable.value.placeholder
MAX_SCALE = 16_383  # PostgreSQL's largest numeric scale: a larger one is not a real column
_EPOCH = datetime(1970, 1, 1)
_EPOCH_DAY = date(1970, 1, 1)

# A field decoder turns the wire value (never None) into the value written to the target.
Decoder = Callable[[Any], Any]


class ZonedText(str):
    """A timestamp or time with a zone, as the producer sent it (``2024-01-15T10:30:00Z``).

    PostgreSQL's timestamptz and timetz read the text as it is, and SQLite keeps it; MariaDB and
    MySQL refuse a zone in a datetime, so their applier writes :attr:`utc` instead: the same
    instant as UTC wall time, which a session in UTC stores exactly.
    """

    __slots__ = ("utc",)
    utc: str


# -- messages that are not row changes ---------------------------------------------------------


def skip_reason(document: Any) -> str | None:
    """Why a decoded message body (or array element) is no row change to apply, or None.

    ``tombstone``: null, or a wrapper with a null payload — Kafka's delete marker, which a
    bridge forwards as an empty or ``null`` body. ``transaction``: Debezium's BEGIN/END
    transaction metadata. ``heartbeat``: a payload of ``ts_ms`` alone. ``message``: a PostgreSQL
    logical-decoding message (``op: m``), which changes no row.
    """
    if document is None:
        return "tombstone"
    if not isinstance(document, dict):
        return None
    payload = document
    if "payload" in document and "op" not in document:
        payload = document["payload"]
        if payload is None:
            return "tombstone"
        if not isinstance(payload, dict):
            return None
    op = payload.get("op")
    if op is not None:
        return "message" if op == "m" else None
    if payload.get("status") in ("BEGIN", "END") and "id" in payload:
        return "transaction"
    if len(payload) == 1 and "ts_ms" in payload:
        return "heartbeat"
    return None


# -- the wrapper ---------------------------------------------------------------------------------


def unwrap(document: dict[str, Any], placeholder: str = PLACEHOLDER) -> Any:
    """The payload of a ``{schema, payload}`` wrapper, its rows decoded by the schema.

    Returns a new payload: ``before`` and ``after`` decoded, placeholders left out of them and
    ``after``'s named in ``unavailable``. Without a schema (``"schema": null``) the payload
    is returned as it is. DecodeError when the schema is malformed or a value does not fit it.
    """
    payload = document["payload"]
    schema = document.get("schema")
    if schema is None or not isinstance(payload, dict):
        return payload  # events.decode_event says what is wrong with a payload that is no object
    try:
        envelope = _CACHE.envelope(schema, placeholder)
    except RecursionError:
        raise DecodeError("'schema' is nested too deeply to decode") from None
    return envelope.decode(payload)


def strip_placeholders(
    row: dict[str, Any], placeholder: str = PLACEHOLDER
) -> tuple[dict[str, Any], list[str]]:
    """``row`` without the columns that hold the placeholder (in any of its forms), and those
    columns' names; for events without a schema, where a column's type is unknown.

    Asked of every event's rows: the common answer (no placeholder) costs ~0.5 µs for five
    columns, one pass with no call per value.
    """
    forms = _FORMS.get(placeholder) or _placeholder_forms(placeholder)
    text, encoded, containers = forms.text, forms.base64, forms.containers
    for value in row.values():
        kind = value.__class__
        if kind is str:
            if value in (text, encoded):
                break
        elif (kind is list or kind is dict) and value in containers:
            break
    else:
        return row, []
    missing = [name for name, value in row.items() if value is not None and value in forms.all]
    return {k: v for k, v in row.items() if k not in missing}, missing


# -- parsing: a schema seen before is not parsed again -------------------------------------------

_SCHEMA_START = '{"schema":'
_PAYLOAD_KEY = ',"payload":'
_KNOWN_TEXTS = 64  # schema texts remembered (a few per table: its versions)
# The body parser's: numbers as events.decode_body reads them.
_RAW_DECODE = json.JSONDecoder().raw_decode


class _Texts:
    """Schema texts seen byte for byte before, each with its parsed schema.

    JsonConverter writes ``{"schema":<schema>,"payload":<payload>}``, compact, the same schema
    text in every message of a table: 5 KB for 17 columns, half of a message's decoding time
    to parse. A body whose text up to the first ``,"payload":`` is a known schema's text has
    exactly that schema (the text is a whole JSON value), so only its payload is parsed. A
    schema is remembered only once its text is checked to parse to the schema itself (a
    ``,"payload":`` inside the schema, in a parameter's key, fails the check: such a schema is
    just parsed every time).
    """

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self.refused: set[str] = set()

    def parse(self, text: str) -> Any | None:
        """The message parsed with its known schema, or None (parse it all)."""
        if not text.startswith(_SCHEMA_START):
            return None
        end = text.find(_PAYLOAD_KEY)
        schema = self.schemas.get(text[len(_SCHEMA_START) : end]) if end > 0 else None
        if schema is None:
            return None
        try:
            payload, stop = _RAW_DECODE(text, end + len(_PAYLOAD_KEY))
        except (ValueError, RecursionError):
            return None  # the full parse says what is wrong
        if text[stop:].strip() != "}":
            return None
        return {"schema": schema, "payload": payload}

    def remember(self, text: str, document: Any) -> None:
        """Remember the schema of a message just parsed in full, if its text can be found."""
        if not text.startswith(_SCHEMA_START) or not isinstance(document, dict):
            return
        schema = document.get("schema")
        end = text.find(_PAYLOAD_KEY)
        if not isinstance(schema, dict) or end < 0:
            return
        candidate = text[len(_SCHEMA_START) : end]
        if candidate in self.refused or candidate in self.schemas:
            return
        try:
            fits = json.loads(candidate) == schema
        except (ValueError, RecursionError):
            fits = False
        if len(self.schemas) >= _KNOWN_TEXTS or len(self.refused) >= _KNOWN_TEXTS:
            self.schemas.clear()  # a stream of ever new schemas: start over, stay bounded
            self.refused.clear()
        (self.schemas.__setitem__(candidate, schema) if fits else self.refused.add(candidate))


_TEXTS = _Texts()


def parse_known(text: str) -> Any | None:
    """A ``{"schema":…,"payload":…}`` message text parsed without parsing its schema again,
    when the schema's text was seen before; None otherwise (then parse the text, and call
    :func:`remember_schema`)."""
    return _TEXTS.parse(text)


def remember_schema(text: str, document: Any) -> None:
    _TEXTS.remember(text, document)


# -- compiled schemas ----------------------------------------------------------------------------


class _Envelope:
    """A compiled envelope schema: decoders for the fields of ``before`` and ``after``."""

    __slots__ = ("after", "before")

    def __init__(self, before: _Row | None, after: _Row | None):
        self.before = before
        self.after = after

    def decode(self, payload: dict[str, Any]) -> dict[str, Any]:
        decoded = dict(payload)
        before = payload.get("before")
        if self.before is not None and isinstance(before, dict):
            decoded["before"] = self.before.decode(before, "before", None)
        after = payload.get("after")
        if self.after is not None and isinstance(after, dict):
            missing: list[str] = []
            decoded["after"] = self.after.decode(after, "after", missing)
            if missing:
                given = payload.get("unavailable") or []
                if not isinstance(given, list):
                    raise DecodeError(
                        f"'unavailable' must be a list of column names, found {given!r}"
                    )
                decoded["unavailable"] = [*given, *(m for m in missing if m not in given)]
        return decoded


class _Row:
    """The decoders of one row struct's fields, by column name."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, _Field]):
        self.fields = fields

    def decode(self, row: dict[str, Any], part: str, missing: list[str] | None) -> dict[str, Any]:
        """The row decoded; columns holding the placeholder are left out (and, for ``after``,
        appended to ``missing``)."""
        decoded: dict[str, Any] = {}
        fields = self.fields
        for name, value in row.items():
            field = fields.get(name)
            if value is None or field is None:
                # A column the schema does not describe is passed on as sent: the target (or
                # the mapping) decides about it, as for an event without a schema.
                decoded[name] = value
                continue
            if field.placeholders and value in field.placeholders:
                if missing is not None:
                    missing.append(name)
                continue
            try:
                decoded[name] = field.decode(value) if field.decode is not None else value
            except (_Unfit, ValueError, OverflowError) as exc:
                # ValueError: also a number of more digits than Python converts to text.
                raise DecodeError(
                    f"'{part}.{name}' ({field.type_name}) cannot be decoded: {exc}"
                ) from None
        return decoded


class _Field:
    __slots__ = ("decode", "placeholders", "type_name")

    def __init__(self, decode: Decoder | None, placeholders: tuple[Any, ...], type_name: str):
        self.decode = decode  # None: the value is already what the target gets
        self.placeholders = placeholders  # the forms Debezium's placeholder takes in this field
        self.type_name = type_name


class _Unfit(Exception):
    """A value that does not fit its field's schema (becomes a DecodeError naming the field)."""


class _Cache:
    """Compiled envelopes, found by the schema's name and checked by equality.

    Every event carries the whole schema (~100 nodes for a ten-column table), parsed afresh.
    Hashing a canonical text of it (``json.dumps(sort_keys=True)``) would cost more than the
    event's own decoding; comparing the parsed schema with the cached one (``==``, in C) stops
    at the first difference and is a few µs when equal. A schema that changed (a column added)
    compiles once more under the same name; the cache keeps the newest few per name and a
    bounded number of names, so a hostile stream of schemas cannot grow it without end.
    """

    PER_NAME = 4
    NAMES = 256

    def __init__(self) -> None:
        self._by_name: OrderedDict[tuple[Any, str], list[tuple[Any, _Envelope]]] = OrderedDict()
        self._lock = threading.Lock()  # decode-ahead and the loop may decode at once

    def envelope(self, schema: Any, placeholder: str) -> _Envelope:
        if not isinstance(schema, dict):
            raise DecodeError(f"'schema' must be an object or null, found {_kind(schema)}")
        name = schema.get("name")
        key = (name if isinstance(name, str) else None, placeholder)
        with self._lock:
            versions = self._by_name.get(key)
            if versions is not None:
                for known, compiled in versions:
                    # The very object when parse_known reused it: no comparison at all.
                    if known is schema or known == schema:
                        return compiled
        compiled = _compile_envelope(schema, placeholder)  # DecodeError for a bad schema
        with self._lock:
            versions = self._by_name.setdefault(key, [])
            self._by_name.move_to_end(key)
            versions.insert(0, (schema, compiled))
            del versions[self.PER_NAME :]
            while len(self._by_name) > self.NAMES:
                self._by_name.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._by_name.clear()
        _TEXTS.schemas.clear()
        _TEXTS.refused.clear()


_CACHE = _Cache()


def _compile_envelope(schema: dict[str, Any], placeholder: str) -> _Envelope:
    fields = _struct_fields(schema, "schema")
    rows: dict[str, _Row | None] = {"before": None, "after": None}
    for entry in fields:
        part = entry.get("field")
        if part in rows:
            if entry.get("type") != "struct":
                raise DecodeError(f"schema: '{part}' must be a struct, found {entry.get('type')!r}")
            rows[part] = _compile_row(entry, str(part), placeholder)
    return _Envelope(rows["before"], rows["after"])


def _compile_row(schema: dict[str, Any], part: str, placeholder: str) -> _Row:
    forms = _placeholder_forms(placeholder)
    compiled: dict[str, _Field] = {}
    for entry in _struct_fields(schema, f"schema of '{part}'"):
        name = entry["field"]
        decode = _decoder(entry, f"{part}.{name}", nested=False)
        compiled[name] = _Field(decode, forms.for_schema(entry), _type_name(entry))
    return _Row(compiled)


def _struct_fields(schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise DecodeError(f"{where}: a struct needs a list of 'fields', found {_kind(fields)}")
    for entry in fields:
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
            raise DecodeError(f"{where}: every field needs a name ('field'), found {entry!r:.80}")
    return fields


def _type_name(entry: dict[str, Any]) -> str:
    name = entry.get("name")
    return name if isinstance(name, str) else str(entry.get("type"))


def _decoder(entry: dict[str, Any], where: str, nested: bool) -> Decoder | None:
    """The decoder of one field's schema (None: pass the value as sent)."""
    kind = entry.get("type")
    name = entry.get("name")
    logical = _LOGICAL.get(name) if isinstance(name, str) else None
    if logical is not None:
        return logical(entry, where)
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "bytes":
        return _base64_text if nested else _bytes
    if kind == "array":
        items = entry.get("items")
        if not isinstance(items, dict):
            raise DecodeError(f"schema of '{where}': an array needs 'items', found {_kind(items)}")
        return _array(_decoder(items, f"{where}[]", nested=True))
    if kind == "struct":
        return _struct(
            {
                e["field"]: _decoder(e, f"{where}.{e['field']}", True)
                for e in _struct_fields(entry, f"schema of '{where}'")
            }
        )
    if kind == "map":
        return _expect(dict, list)  # an object, or an array of [key, value] pairs: as sent
    raise DecodeError(f"schema of '{where}': unknown type {kind!r}")


# -- primitive types -----------------------------------------------------------------------------


def _expect(*kinds: type) -> Decoder:
    def check(value: Any) -> Any:
        if type(value) not in kinds:
            raise _Unfit(f"expected {' or '.join(k.__name__ for k in kinds)}, found {_kind(value)}")
        return value

    return check


# JsonConverter's names for Kafka Connect's types (FLOAT32 is "float", FLOAT64 "double"); the
# enum names float32/float64 are taken too.
_PRIMITIVES: dict[str, Decoder] = {
    "int8": _expect(int),
    "int16": _expect(int),
    "int32": _expect(int),
    "int64": _expect(int),
    "float": _expect(float, int),
    "double": _expect(float, int),
    "float32": _expect(float, int),
    "float64": _expect(float, int),
    "boolean": _expect(bool),
    "string": _expect(str),
}
_text = _PRIMITIVES["string"]


def _bytes(value: Any) -> bytes:
    if type(value) is not str:
        raise _Unfit(f"expected base64 text, found {_kind(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Unfit(f"not base64: {exc}") from None


def _base64_text(value: Any) -> str:
    """Bytes inside an array or struct stay base64 text: a JSON document cannot hold bytes."""
    _bytes(value)
    return str(value)


def _array(items: Decoder | None) -> Decoder:
    def decode(value: Any) -> Any:
        if type(value) is not list:
            raise _Unfit(f"expected an array, found {_kind(value)}")
        if items is None:
            return value
        return [None if v is None else items(v) for v in value]

    return decode


def _struct(fields: dict[str, Decoder | None]) -> Decoder:
    def decode(value: Any) -> Any:
        if type(value) is not dict:
            raise _Unfit(f"expected an object, found {_kind(value)}")
        out = {}
        for key, item in value.items():
            decoder = fields.get(key)
            out[key] = item if item is None or decoder is None else decoder(item)
        return out

    return decode


# -- logical types -------------------------------------------------------------------------------


def _decimal_text(unscaled: int, scale: int) -> str:
    """The exact decimal text of ``unscaled`` × 10^-``scale``, its scale's zeros kept."""
    sign, digits = ("-", str(-unscaled)) if unscaled < 0 else ("", str(unscaled))
    if scale <= 0:
        return sign + digits + "0" * -scale if unscaled else "0"
    digits = digits.rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def _unscaled(value: Any) -> int:
    raw = _bytes(value)
    if not raw:
        raise _Unfit("empty bytes are no number")
    return int.from_bytes(raw, "big", signed=True)


def _scale(value: Any) -> int:
    """A scale as JsonConverter writes it (schema parameters are text) or as a number."""
    if type(value) is str:
        with contextlib.suppress(ValueError):
            value = int(value)
    if type(value) is not int or abs(value) > MAX_SCALE:
        raise _Unfit(f"the scale must be a whole number up to {MAX_SCALE}, found {value!r:.40}")
    return value


def _fixed_decimal(entry: dict[str, Any], where: str) -> Decoder:
    parameters = entry.get("parameters")
    given = parameters.get("scale") if isinstance(parameters, dict) else None
    try:
        scale = _scale(given)
    except _Unfit as exc:
        raise DecodeError(f"schema of '{where}' (Decimal): parameters.scale: {exc}") from None

    def decode(value: Any) -> str:
        if type(value) is str:
            return _decimal_text(_unscaled(value), scale)
        return _numeric_text(value, scale)

    return decode


def _numeric_text(value: Any, scale: int) -> str:
    """A Decimal JsonConverter wrote as a JSON number (``decimal.format=NUMERIC``), with the
    scale's digits. A float is read by its shortest text, exact up to ~15 significant digits."""
    if type(value) not in (int, float, Decimal) or value != value:
        raise _Unfit(f"expected base64 text or a number, found {_kind(value)}")
    number = value if type(value) is Decimal else Decimal(repr(value))
    return f"{number:.{scale}f}" if scale >= 0 else f"{number:f}"


def _variable_decimal(entry: dict[str, Any], where: str) -> Decoder:
    def decode(value: Any) -> str:
        if type(value) is not dict or "scale" not in value or "value" not in value:
            raise _Unfit(f"expected an object of scale and value, found {_kind(value)}")
        return _decimal_text(_unscaled(value["value"]), _scale(value["scale"]))

    return decode


def _whole(value: Any) -> int:
    if type(value) is not int:
        raise _Unfit(f"expected a whole number, found {_kind(value)}")
    return value


def _date(entry: dict[str, Any], where: str) -> Decoder:
    def decode(value: Any) -> str:
        try:
            return (_EPOCH_DAY + timedelta(days=_whole(value))).isoformat()
        except OverflowError:
            raise _Unfit(f"{value} days from 1970-01-01 is out of range") from None

    return decode


def _time_of(per_second: int) -> Callable[[dict[str, Any], str], Decoder]:
    """A time of day (or a MySQL duration) counted in 1/``per_second`` seconds."""

    def compile_time(entry: dict[str, Any], where: str) -> Decoder:
        def decode(value: Any) -> str:
            ticks = _whole(value)
            sign = "-" if ticks < 0 else ""
            seconds, fraction = divmod(abs(ticks), per_second)
            minutes, second = divmod(seconds, 60)
            hours, minute = divmod(minutes, 60)
            return f"{sign}{hours:02d}:{minute:02d}:{second:02d}{_fraction(fraction, per_second)}"

        return decode

    return compile_time


def _fraction(fraction: int, per_second: int) -> str:
    """'.ffffff' (microseconds), or '.fffffffff' where nanoseconds carry more; '' for none."""
    if not fraction:
        return ""
    nanos = fraction * (1_000_000_000 // per_second)
    return f".{nanos // 1000:06d}" if nanos % 1000 == 0 else f".{nanos:09d}"


def _timestamp_of(per_second: int) -> Callable[[dict[str, Any], str], Decoder]:
    """A timestamp without zone, counted in 1/``per_second`` seconds from 1970-01-01."""

    def compile_timestamp(entry: dict[str, Any], where: str) -> Decoder:
        def decode(value: Any) -> str:
            seconds, fraction = divmod(_whole(value), per_second)
            try:
                moment = _EPOCH + timedelta(seconds=seconds)
            except OverflowError:
                raise _Unfit(f"{value} is out of the range of years 1 to 9999") from None
            if not 1 <= moment.year <= 9999:
                raise _Unfit(f"{value} is out of the range of years 1 to 9999")
            return f"{moment:%Y-%m-%d %H:%M:%S}{_fraction(fraction, per_second)}"

        return decode

    return compile_timestamp


def _zoned(parse: Callable[[str], Any], wall: Callable[[Any], str]) -> Callable[..., Decoder]:
    def compile_zoned(entry: dict[str, Any], where: str) -> Decoder:
        def decode(value: Any) -> ZonedText:
            text = ZonedText(_text(value))
            try:
                parsed = parse(text)
            except ValueError:
                raise _Unfit(f"not an ISO 8601 text with a zone: {value!r:.60}") from None
            if parsed.tzinfo is None:
                raise _Unfit(f"no zone in {value!r:.60}")
            text.utc = wall(parsed)
            return text

        return decode

    return compile_zoned


def _utc_timestamp(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S}{_fraction(utc.microsecond, 1_000_000)}"


def _utc_time(moment: time) -> str:
    offset = moment.utcoffset() or timedelta()
    day = datetime.combine(_EPOCH_DAY, moment.replace(tzinfo=None)) - offset
    return f"{day:%H:%M:%S}{_fraction(day.microsecond, 1_000_000)}"


def _json_document(entry: dict[str, Any], where: str) -> Decoder:
    def decode(value: Any) -> Any:
        try:
            # Parsed as message bodies are (events.py), so the document lands in a json/jsonb
            # column as itself and in a text column as its JSON text.
            return _parse_document(_text(value))
        except (ValueError, RecursionError) as exc:
            raise _Unfit(f"not a JSON document: {exc}") from None

    return decode


_parse_document = json.loads


def _as_text(entry: dict[str, Any], where: str) -> Decoder:
    return _text


def _as_bytes(entry: dict[str, Any], where: str) -> Decoder:
    return _bytes


_LOGICAL: dict[str, Callable[[dict[str, Any], str], Decoder]] = {
    "org.apache.kafka.connect.data.Decimal": _fixed_decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_decimal,
    "io.debezium.time.Date": _date,
    "org.apache.kafka.connect.data.Date": _date,
    "io.debezium.time.Time": _time_of(1000),
    "org.apache.kafka.connect.data.Time": _time_of(1000),
    "io.debezium.time.MicroTime": _time_of(1_000_000),
    "io.debezium.time.NanoTime": _time_of(1_000_000_000),
    "io.debezium.time.Timestamp": _timestamp_of(1000),
    "org.apache.kafka.connect.data.Timestamp": _timestamp_of(1000),
    "io.debezium.time.MicroTimestamp": _timestamp_of(1_000_000),
    "io.debezium.time.NanoTimestamp": _timestamp_of(1_000_000_000),
    "io.debezium.time.ZonedTimestamp": _zoned(datetime.fromisoformat, _utc_timestamp),
    "io.debezium.time.ZonedTime": _zoned(time.fromisoformat, _utc_time),
    "io.debezium.data.Json": _json_document,
    "io.debezium.data.Uuid": _as_text,
    "io.debezium.data.Xml": _as_text,
    "io.debezium.data.Enum": _as_text,
    "io.debezium.data.EnumSet": _as_text,
    "io.debezium.data.Bits": _as_bytes,
}


# -- the placeholder's forms ---------------------------------------------------------------------


class _Forms:
    """Debezium's placeholder as each kind of column carries it (UnchangedToastedPlaceholder)."""

    def __init__(self, placeholder: str):
        raw = placeholder.encode()
        self.text = placeholder
        self.base64 = base64.b64encode(raw).decode()
        self.text_array = [placeholder]
        self.binary_array = [self.base64]
        self.number_array = list(raw)  # int and bigint arrays: the placeholder's bytes
        self.hstore = {placeholder: placeholder}
        # uuid[]: Java's UUID.nameUUIDFromBytes of the placeholder (an MD5, version 3 UUID)
        digest = bytearray(md5(raw, usedforsecurity=False).digest())
        digest[6] = (digest[6] & 0x0F) | 0x30
        digest[8] = (digest[8] & 0x3F) | 0x80
        self.uuid_array = [str(uuid.UUID(bytes=bytes(digest)))]
        self.containers: tuple[Any, ...] = (
            self.text_array,
            self.binary_array,
            self.number_array,
            self.hstore,
            self.uuid_array,
        )
        self.all: tuple[Any, ...] = (self.text, self.base64, *self.containers)

    def for_schema(self, entry: dict[str, Any]) -> tuple[Any, ...]:
        """The forms a field of this schema may carry (none for numbers, dates, booleans)."""
        kind = entry.get("type")
        if kind == "string":
            return (self.text,)
        if kind == "bytes":
            return (self.base64,)
        if kind == "map":
            return (self.hstore,)
        if kind == "array":
            items = entry.get("items")
            item_kind = items.get("type") if isinstance(items, dict) else None
            if item_kind == "string":
                return (self.text_array, self.uuid_array)
            if item_kind == "bytes":
                return (self.binary_array,)
            if item_kind in ("int8", "int16", "int32", "int64"):
                return (self.number_array,)
        return ()


_FORMS: dict[str, _Forms] = {}


def _placeholder_forms(placeholder: str) -> _Forms:
    forms = _FORMS.get(placeholder)
    if forms is None:
        forms = _FORMS[placeholder] = _Forms(placeholder)
    return forms


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    return "an object"
