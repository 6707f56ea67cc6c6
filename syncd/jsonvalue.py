"""JSON that keeps every number exactly, both ways.

Python's ``json`` reads ``37037036703703703670.370370367`` as a float (``3.7037036703703704e+19``)
and ``2.50`` as ``2.5``. syncd reads every number with a fraction or an exponent as a
``Decimal`` instead (integers are exact already), and writes a ``Decimal`` back as its own
digits — ``2.50`` stays ``2.50`` — so a value reaches a ``numeric`` column, or a JSON document,
with every digit it was sent with. The standard library's C encoder cannot write a Decimal as a
number; simplejson's can (``use_decimal``), from C: ``bench/decode_cost.py`` measures what it
costs per event (README, Performance).

``NaN``, ``Infinity`` and ``-Infinity`` — not JSON, but what Python's ``json.dumps`` writes for
non-finite floats — are read as floats; a document nested in a row value cannot hold them (see
:func:`non_finite_inside`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import simplejson

# Past this many places a number is written in exponent form: a hostile 1e999999999 must not
# become a billion zeros. PostgreSQL's numeric holds 16,383 places after the point.
_PLAIN_PLACES = 16_383


class Number(Decimal):
    """A JSON number with a fraction or an exponent, exactly as sent.

    Written back in plain digits, as PostgreSQL writes a numeric — ``0.0000000000`` and
    ``0.0000001``, not Decimal's ``0E-10`` and ``1E-7`` — with the scale it came with
    (``2.50``). Arithmetic on it gives a plain Decimal.
    """

    __slots__ = ()

    def __str__(self) -> str:
        exponent = self.as_tuple().exponent
        if isinstance(exponent, int) and -_PLAIN_PLACES <= exponent <= _PLAIN_PLACES:
            return format(self, "f")
        return super().__str__()  # NaN, ±Infinity, or too far out for plain digits


def _number(text: str) -> Decimal:
    """The exact value of a JSON number's text with a fraction or an exponent.

    A plain Decimal — which simplejson writes from C, without a call back into Python —
    unless Decimal's own text would be in exponent form: an exponent in the text, or six
    zeros after the point (``0.0000001`` is ``1E-7``, ``0.0000000000`` is ``0E-10``).
    """
    try:
        if "e" in text or "E" in text or text.startswith(("0.000000", "-0.000000")):
            return Number(text)
        return Decimal(text)
    except InvalidOperation:  # an exponent past what Decimal holds (found by the fuzzer)
        raise ValueError(f"number {text[:40]} is too large to hold") from None


_DECODER = json.JSONDecoder(parse_float=_number)

# Compact, UTF-8 as is: message bodies (capture, publish, dead letters). NaN is written as
# Python's json writes it, so a body that came with NaN leaves as it came.
_COMPACT = simplejson.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), use_decimal=True, allow_nan=True, default=str
)
_ASCII = simplejson.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), use_decimal=True, allow_nan=True, default=str
)
# Spaced like PostgreSQL's jsonb text ({"a": 1, "b": [1, 2]}): a nested document lands in a
# json column in this form. Non-finite numbers raise ValueError: they are not JSON.
_SPACED = simplejson.JSONEncoder(ensure_ascii=False, use_decimal=True, allow_nan=False, default=str)


def loads(text: str | bytes) -> Any:
    """Parse JSON text; numbers with a fraction or an exponent become exact Decimals."""
    if isinstance(text, bytes | bytearray):
        # As json.loads reads bytes: UTF-8, -16 or -32, by the first bytes.
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _DECODER.decode(text)


def raw_decode(text: str, start: int) -> tuple[Any, int]:
    """One JSON value of ``text`` from ``start`` (numbers as :func:`loads` reads them), and
    where it ends."""
    return _DECODER.raw_decode(text, start)


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``: Decimals keep their digits, other non-JSON types str()."""
    return _COMPACT.encode(value)


def dumps_ascii(value: Any) -> str:
    """:func:`dumps` with every non-ASCII character escaped: for text UTF-8 cannot encode (a
    lone surrogate is written back as the escape it came as)."""
    return _ASCII.encode(value)


def spaced_encoder(default: Callable[[Any], Any]) -> simplejson.JSONEncoder:
    """An encoder like :func:`dumps_spaced`'s that writes what JSON has no form for by
    ``default`` (a dialect's own text for bytes, say)."""
    # encoding=None: simplejson would otherwise read bytes as UTF-8 text, never asking default.
    return simplejson.JSONEncoder(
        ensure_ascii=False,
        use_decimal=True,
        allow_nan=False,
        default=default,
        encoding=None,  # type: ignore[arg-type]  # the stubs miss that None is allowed
    )


def dumps_spaced(value: Any) -> str:
    """JSON text spaced like PostgreSQL's jsonb output; ValueError for NaN or ±Infinity."""
    return _SPACED.encode(value)


def dumps_indented(value: Any) -> str:
    """JSON text indented for people to read (``syncd dlq show``), every digit kept."""
    return simplejson.dumps(
        value, indent=2, ensure_ascii=False, use_decimal=True, allow_nan=True, default=str
    )


def is_non_finite(value: Any) -> bool:
    """NaN or ±Infinity, as a float or a Decimal."""
    if type(value) is float:
        return not math.isfinite(value)
    return isinstance(value, Decimal) and not value.is_finite()


NON_FINITE_TEXTS = frozenset({"NaN", "Infinity", "-Infinity"})


def is_non_finite_text(value: Any) -> bool:
    """PostgreSQL's text of a non-finite number (how capture sends a numeric NaN)."""
    return type(value) is str and value in NON_FINITE_TEXTS


def non_finite_text(value: float | Decimal) -> str:
    """PostgreSQL's spelling of a non-finite number: NaN, Infinity or -Infinity."""
    if (value.is_nan() if isinstance(value, Decimal) else math.isnan(value)) is True:
        return "NaN"
    return "-Infinity" if value < 0 else "Infinity"


def non_finite_inside(value: Any) -> bool:
    """Whether a JSON document (an object or array) holds NaN or ±Infinity anywhere."""
    if isinstance(value, dict):
        return any(non_finite_inside(v) for v in value.values())
    if isinstance(value, list):
        return any(non_finite_inside(v) for v in value)
    return is_non_finite(value)
