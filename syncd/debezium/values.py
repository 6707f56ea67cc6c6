"""Debezium's wire forms of single values, decoded by their field's schema.

One decoder per field, made once per schema (``decoder``): JsonConverter's types and the
logical types of Kafka Connect and Debezium, each into the value a target writes exactly (the
table in ``syncd/debezium/__init__.py``). A value that does not fit raises :class:`Unfit`,
which the row decoder turns into a DecodeError naming the field.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from syncd import jsonvalue
from syncd.errors import DecodeError
from syncd.jsonvalue import Number

MAX_SCALE = 16_383  # PostgreSQL's largest numeric scale: a larger one is not a real column
_EPOCH = datetime(1970, 1, 1)
_EPOCH_DAY = date(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH_DAY.toordinal()

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


class Unfit(Exception):
    """A value that does not fit its field's schema (becomes a DecodeError naming the field)."""


def struct_fields(schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise DecodeError(f"{where}: a struct needs a list of 'fields', found {describe(fields)}")
    for entry in fields:
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
            raise DecodeError(f"{where}: every field needs a name ('field'), found {entry!r:.80}")
    return fields


def type_name(entry: dict[str, Any]) -> str:
    name = entry.get("name")
    return name if isinstance(name, str) else str(entry.get("type"))


def decoder(entry: dict[str, Any], where: str, nested: bool) -> Decoder | None:
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
            raise DecodeError(
                f"schema of '{where}': an array needs 'items', found {describe(items)}"
            )
        return _array(decoder(items, f"{where}[]", nested=True))
    if kind == "struct":
        return _struct(
            {
                e["field"]: decoder(e, f"{where}.{e['field']}", True)
                for e in struct_fields(entry, f"schema of '{where}'")
            }
        )
    if kind == "map":
        return _expect(dict, list)  # an object, or an array of [key, value] pairs: as sent
    raise DecodeError(f"schema of '{where}': unknown type {kind!r}")


# -- primitive types -----------------------------------------------------------------------------


def _expect(*kinds: type) -> Decoder:
    exact = Decimal in kinds  # syncd reads a JSON number with a fraction as a Decimal (or Number)

    def check(value: Any) -> Any:
        if type(value) not in kinds and not (exact and isinstance(value, Decimal)):
            raise Unfit(
                f"expected {' or '.join(k.__name__ for k in kinds)}, found {describe(value)}"
            )
        return value

    return check


# JsonConverter's names for Kafka Connect's types (FLOAT32 is "float", FLOAT64 "double"); the
# enum names float32/float64 are taken too.
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "int8": (int,),
    "int16": (int,),
    "int32": (int,),
    "int64": (int,),
    # Decimal: a JSON number with a fraction, as syncd reads every one (exactly).
    "float": (float, int, Decimal, Number),
    "double": (float, int, Decimal, Number),
    "float32": (float, int, Decimal, Number),
    "float64": (float, int, Decimal, Number),
    "boolean": (bool,),
    "string": (str,),
}
_PRIMITIVES: dict[str, Decoder] = {name: _expect(*kinds) for name, kinds in PRIMITIVES.items()}
_text = _PRIMITIVES["string"]


def _bytes(value: Any) -> bytes:
    if type(value) is not str:
        raise Unfit(f"expected base64 text, found {describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unfit(f"not base64: {exc}") from None


def _base64_text(value: Any) -> str:
    """Bytes inside an array or struct stay base64 text: a JSON document cannot hold bytes."""
    _bytes(value)
    return str(value)


def _array(items: Decoder | None) -> Decoder:
    def decode(value: Any) -> Any:
        if type(value) is not list:
            raise Unfit(f"expected an array, found {describe(value)}")
        if items is None:
            return value
        return [None if v is None else items(v) for v in value]

    return decode


def _struct(fields: dict[str, Decoder | None]) -> Decoder:
    def decode(value: Any) -> Any:
        if type(value) is not dict:
            raise Unfit(f"expected an object, found {describe(value)}")
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
        raise Unfit("empty bytes are no number")
    return int.from_bytes(raw, "big", signed=True)


def _scale(value: Any) -> int:
    """A scale as JsonConverter writes it (schema parameters are text) or as a number."""
    if type(value) is str:
        with contextlib.suppress(ValueError):
            value = int(value)
    if type(value) is not int or abs(value) > MAX_SCALE:
        raise Unfit(f"the scale must be a whole number up to {MAX_SCALE}, found {value!r:.40}")
    return value


def _fixed_decimal(entry: dict[str, Any], where: str) -> Decoder:
    parameters = entry.get("parameters")
    given = parameters.get("scale") if isinstance(parameters, dict) else None
    try:
        scale = _scale(given)
    except Unfit as exc:
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
        raise Unfit(f"expected base64 text or a number, found {describe(value)}")
    number = value if type(value) is Decimal else Decimal(repr(value))
    return f"{number:.{scale}f}" if scale >= 0 else f"{number:f}"


def _variable_decimal(entry: dict[str, Any], where: str) -> Decoder:
    def decode(value: Any) -> str:
        if type(value) is not dict or "scale" not in value or "value" not in value:
            raise Unfit(f"expected an object of scale and value, found {describe(value)}")
        return _decimal_text(_unscaled(value["value"]), _scale(value["scale"]))

    return decode


def _whole(value: Any) -> int:
    if type(value) is not int:
        raise Unfit(f"expected a whole number, found {describe(value)}")
    return value


def _date(entry: dict[str, Any], where: str) -> Decoder:
    def decode(value: Any) -> str:
        try:
            return (_EPOCH_DAY + timedelta(days=_whole(value))).isoformat()
        except OverflowError:
            raise Unfit(f"{value} days from 1970-01-01 is out of range") from None

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
            days, second = divmod(seconds, 86_400)
            try:
                # By hand, not strftime: a third of the cost, per timestamp column.
                day = date.fromordinal(_EPOCH_ORDINAL + days)
            except (ValueError, OverflowError):
                raise Unfit(f"{value} is out of the range of years 1 to 9999") from None
            hour, second = divmod(second, 3600)
            minute, second = divmod(second, 60)
            clock = f"{hour:02d}:{minute:02d}:{second:02d}{_fraction(fraction, per_second)}"
            return f"{day.isoformat()} {clock}"

        return decode

    return compile_timestamp


def _zoned(parse: Callable[[str], Any], wall: Callable[[Any], str]) -> Callable[..., Decoder]:
    def compile_zoned(entry: dict[str, Any], where: str) -> Decoder:
        def decode(value: Any) -> ZonedText:
            text = ZonedText(_text(value))
            try:
                parsed = parse(text)
            except ValueError:
                raise Unfit(f"not an ISO 8601 text with a zone: {value!r:.60}") from None
            if parsed.tzinfo is None:
                raise Unfit(f"no zone in {value!r:.60}")
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
            raise Unfit(f"not a JSON document: {exc}") from None

    return decode


_parse_document = jsonvalue.loads  # numbers exact


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


def describe(value: Any) -> str:
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
