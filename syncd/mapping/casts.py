"""Column casts: a mapping's ``type:``, turning what JSON carries into the target's type.

Events carry JSON: text, numbers, booleans, null, documents. A cast reads what a producer
sends for a type — ISO 8601 text or epoch numbers for times, numeric text for numbers,
``"true"``/``"false"`` for booleans, a document's text for json — and gives the value in the
form every target writes exactly (numbers as int or Decimal, times as ISO 8601 text). A value
that cannot be cast is a mapping error naming its type (the event is dead-lettered). Null
stays null.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from syncd import jsonvalue
from syncd.errors import MappingApplyError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RANGES = {"int": 2**31, "bigint": 2**63}
_BOOL_TEXT = {
    "true": True, "t": True, "yes": True, "y": True, "on": True, "1": True,
    "false": False, "f": False, "no": False, "n": False, "off": False, "0": False,
}  # fmt: skip
# Epoch numbers for timestamps by magnitude: below 1e11 seconds (until the year 5138), below
# 1e14 milliseconds (Debezium's Timestamp, source.ts_ms), below 1e17 microseconds
# (MicroTimestamp), else nanoseconds (NanoTimestamp).
_EPOCH_UNITS = ((10**11, 1), (10**14, 10**3), (10**17, 10**6))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return "a JSON array" if isinstance(value, list) else "a JSON object"


def _cannot(value: Any, kind: str, write: str) -> MappingApplyError:
    return MappingApplyError(f"cannot cast {_kind(value)} to {kind}; send {write}")


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # plain digits, scale kept: 1E+2 is '100'
    if isinstance(value, int | float):
        return repr(value)
    return jsonvalue.dumps(value)


def _exact_number(value: Any) -> Decimal | None:
    """A finite number or numeric text as a Decimal; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the float's shortest digits, not its binary expansion
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _integer(kind: str) -> Callable[[Any], int]:
    limit = _INT_RANGES[kind]

    def cast(value: Any) -> int:
        number = _exact_number(value)
        write = f"a whole number from {-limit} to {limit - 1}"
        if number is None or number != number.to_integral_value():
            raise _cannot(value, kind, write)
        whole = int(number)
        if not -limit <= whole < limit:
            raise _cannot(value, kind, write)
        return whole

    return cast


def _numeric(value: Any) -> Decimal:
    number = _exact_number(value)
    if number is None:
        raise _cannot(value, "numeric", "a number or numeric text such as '12.50'")
    return number


def _float(value: Any) -> float:
    number = _exact_number(value)
    if number is None:
        if isinstance(value, float):
            return value  # NaN and ±Infinity are floats too
        if isinstance(value, str) and value.strip().lower() in ("nan", "infinity", "-infinity"):
            return float(value.strip())
        raise _cannot(value, "float", "a number or numeric text")
    return float(number)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise _cannot(value, "bool", "true/false, 'true'/'false' (or t/f, yes/no, 1/0)")


def _date(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        try:  # days since 1970-01-01 (Debezium's Date)
            return (date(1970, 1, 1) + timedelta(days=value)).isoformat()
        except OverflowError:
            pass
    elif isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise _cannot(value, "date", "an ISO 8601 date such as '2024-01-31', or days since 1970-01-01")


def _timestamp(value: Any) -> str:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        try:
            return _from_epoch(Decimal(value)).isoformat(sep=" ")
        except (OverflowError, ValueError, InvalidOperation):
            pass
    elif isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).isoformat(sep=" ")
        except ValueError:
            pass
    raise _cannot(
        value,
        "timestamp",
        "ISO 8601 text such as '2024-01-31 12:00:00' (a zone may follow), or epoch seconds, "
        "milliseconds, microseconds or nanoseconds",
    )


def _from_epoch(number: Decimal) -> datetime:
    """UTC, without a zone: what a timestamp column of any target takes as it is."""
    scale = next((unit for limit, unit in _EPOCH_UNITS if abs(number) < limit), 10**9)
    whole_us = int((number * 10**6 / scale).to_integral_value())
    return (_EPOCH + timedelta(microseconds=whole_us)).replace(tzinfo=None)


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # already a document (object, array, number, boolean)
    try:
        return jsonvalue.loads(value)  # numbers kept exact
    except ValueError:
        raise _cannot(value, "json", "a JSON document, or its text") from None


CASTS: dict[str, Callable[[Any], Any]] = {
    "text": _to_text,
    "int": _integer("int"),
    "bigint": _integer("bigint"),
    "numeric": _numeric,
    "float": _float,
    "bool": _bool,
    "date": _date,
    "timestamp": _timestamp,
    "json": _json,
}


def cast(kind: str, value: Any) -> Any:
    """``value`` as ``kind`` (a key of CASTS); null stays null. Raises MappingApplyError."""
    return None if value is None else CASTS[kind](value)
