"""Envelope schemas compiled once into row decoders, and schema texts not parsed twice."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from syncd import jsonvalue
from syncd.debezium.placeholder import forms_of
from syncd.debezium.values import (
    PRIMITIVES,
    Decoder,
    Unfit,
    decoder,
    describe,
    struct_fields,
    type_name,
)
from syncd.errors import DecodeError

_SCHEMA_START = '{"schema":'
_PAYLOAD_KEY = ',"payload":'
_KNOWN_TEXTS = 64  # schema texts remembered (a few per table: its versions)
# The body parser's: numbers as events.decode_body reads them (exact).
_RAW_DECODE = jsonvalue.raw_decode


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
            kinds = field.kinds
            if kinds is not None:  # a primitive: checked here, without a call per value
                if value.__class__ not in kinds:
                    raise DecodeError(
                        f"'{part}.{name}' ({field.type_name}) cannot be decoded: expected "
                        f"{' or '.join(k.__name__ for k in kinds)}, found {describe(value)}"
                    )
                decoded[name] = value
                continue
            try:
                decoded[name] = field.decode(value) if field.decode is not None else value
            except (Unfit, ValueError, OverflowError) as exc:
                # ValueError: also a number of more digits than Python converts to text.
                raise DecodeError(
                    f"'{part}.{name}' ({field.type_name}) cannot be decoded: {exc}"
                ) from None
        return decoded


class _Field:
    __slots__ = ("decode", "kinds", "placeholders", "type_name")

    def __init__(
        self,
        decode: Decoder | None,
        kinds: tuple[type, ...] | None,
        placeholders: tuple[Any, ...],
        type_name: str,
    ):
        self.decode = decode  # None: the value is already what the target gets
        self.kinds = kinds  # a primitive's Python types (then no decode)
        self.placeholders = placeholders  # the forms Debezium's placeholder takes in this field
        self.type_name = type_name


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
            raise DecodeError(f"'schema' must be an object or null, found {describe(schema)}")
        name = schema.get("name")
        key = (name if isinstance(name, str) else None, placeholder)
        with self._lock:
            versions = self._by_name.get(key)
            if versions is not None:
                for known, compiled in versions:
                    # The very object when parse_known reused it: no comparison at all.
                    if known is schema or known == schema:
                        return compiled
        compiled = compile_envelope(schema, placeholder)  # DecodeError for a bad schema
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


CACHE = _Cache()


def compile_envelope(schema: dict[str, Any], placeholder: str) -> _Envelope:
    fields = struct_fields(schema, "schema")
    rows: dict[str, _Row | None] = {"before": None, "after": None}
    for entry in fields:
        part = entry.get("field")
        if part in rows:
            if entry.get("type") != "struct":
                raise DecodeError(f"schema: '{part}' must be a struct, found {entry.get('type')!r}")
            rows[part] = _compile_row(entry, str(part), placeholder)
    return _Envelope(rows["before"], rows["after"])


def _compile_row(schema: dict[str, Any], part: str, placeholder: str) -> _Row:
    forms = forms_of(placeholder)
    compiled: dict[str, _Field] = {}
    for entry in struct_fields(schema, f"schema of '{part}'"):
        name = entry["field"]
        placeholders = forms.for_schema(entry)
        kinds = PRIMITIVES.get(entry.get("type")) if "name" not in entry else None  # type: ignore[arg-type]
        if kinds is not None:
            compiled[name] = _Field(None, kinds, placeholders, type_name(entry))
            continue
        decode = decoder(entry, f"{part}.{name}", nested=False)
        compiled[name] = _Field(decode, None, placeholders, type_name(entry))
    return _Row(compiled)
