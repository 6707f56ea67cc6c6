"""Change events: the wire contract's payload, decoded into typed objects.

A message body is one change event, a JSON array of them, or a Debezium ``{schema, payload}``
wrapper around one (decoded by its schema: ``syncd.debezium``). Each element of an array
decodes on its own, so one bad event is reported without failing its neighbours. Debezium's
messages that change no row (tombstones, heartbeats, transaction metadata) decode as
:class:`Skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from syncd import debezium, jsonvalue
from syncd.errors import DecodeError
from syncd.values import body_text, hidden_characters, may_hide_characters

OPS = {"c": "create", "u": "update", "d": "delete", "r": "snapshot read", "t": "truncate"}
MAX_POSITION = 2**63 - 1  # positions are stored as BIGINT
MIN_TS_MS, MAX_TS_MS = -62135596800000, 253402300799999  # years 1 to 9999, as datetime holds


@dataclass(slots=True)  # not frozen: a frozen init costs ~1 µs more, per event
class ChangeEvent:
    """One row change at one source position."""

    op: str  # c, u, d, r or t (the whole table emptied; no before or after)
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    system: str  # source.name
    schema: str | None  # source.schema (or source.db for MySQL-style sources)
    table: str
    position: int  # source.seq, or Debezium's source.lsn: strictly increasing per source row
    event_id: str  # the optional `id`, else "<system>@<position>"
    source_ts_ms: int | None
    raw: Any  # the decoded JSON element, kept to dead-letter this event alone
    # Columns the source could not send (PostgreSQL TOASTed values an update left unchanged):
    # left out of ``after``, so the target keeps what it has.
    unavailable: tuple[str, ...] = ()
    # Where the event's text holds NUL characters, which some targets cannot store: each
    # target's router checks (syncd.values); almost always empty.
    nul_at: tuple[str, ...] = ()
    # A row value is NaN or ±Infinity (which not every target column can hold): checked
    # against the target's columns before applying. False for nearly every event.
    non_finite: bool = False
    # source.types: column -> its SQL type as the source declares it (capture events carry
    # them), in the words of source.connector's dialect; what on_new_column: add goes by.
    types: dict[str, str] | None = None
    types_dialect: str = "postgresql"

    @property
    def is_delete(self) -> bool:
        return self.op == "d"

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True, slots=True)
class BadEvent:
    """An element of a message body that is not a change event, with the reason."""

    error: DecodeError
    raw: Any


@dataclass(frozen=True, slots=True)
class Skipped:
    """A Debezium message that changes no row: acknowledged and counted, never dead-lettered."""

    reason: str  # tombstone | heartbeat | transaction | message (see debezium.skip_reason)
    raw: Any


Decoded = ChangeEvent | BadEvent | Skipped


def decode_body(
    body: bytes | str,
    event_id: str | None = None,
    placeholder: str = debezium.PLACEHOLDER,
) -> list[Decoded]:
    """Decode a message body into its events; raises DecodeError only if the body is not JSON.

    ``event_id`` (the ``syncd-event-id`` header) names the event of a single-event body;
    ``placeholder`` is Debezium's text for a value it could not read
    (``apply.unavailable_placeholder``).
    """
    try:
        # UTF-8 as the contract says, without json's sniffing for UTF-16/32 (1.6 µs of a
        # message's ~25); a leading BOM is ignored.
        text = body_text(body)
        if not text.strip():
            raise DecodeError("message body is empty: no change event in it")
        # A Debezium message whose schema text was seen before: only its payload is parsed.
        document = debezium.parse_known(text)
        if document is None:
            # Numbers with a fraction or exponent decode as exact Decimals: every digit arrives.
            document = jsonvalue.loads(text)
            debezium.remember_schema(text, document)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"message body is not JSON: {exc}") from exc
    except RecursionError as exc:  # a hostile body must not take the daemon down with it
        raise DecodeError("message body is JSON nested too deeply to decode") from exc
    suspect = may_hide_characters(text)
    # Only a body that spells NaN or Infinity somewhere can hold one: the others skip the walk.
    finite = "NaN" not in text and "Infinity" not in text
    if isinstance(document, list):
        if not document:
            raise DecodeError("message body is an empty JSON array: no change event in it")
        return [_decode_slot(element, None, suspect, finite, placeholder) for element in document]
    return [_decode_slot(document, event_id, suspect, finite, placeholder)]


def _decode_slot(
    element: Any, event_id: str | None, suspect: bool, finite: bool, placeholder: str
) -> Decoded:
    """``suspect``: the body has escapes that may hide lone surrogates or NULs (syncd.values);
    ``finite``: it spells no NaN or Infinity anywhere."""
    try:
        event = decode_event(element, event_id, placeholder)
        if suspect:
            event.nul_at = hidden_characters(event.raw)
        if not finite:
            event.non_finite = _check_documents(event)
        return event
    except DecodeError as exc:
        skip = debezium.skip_reason(element)
        return BadEvent(exc, element) if skip is None else Skipped(skip, element)


def _check_documents(event: ChangeEvent) -> bool:
    """Whether a row value is NaN or ±Infinity; DecodeError if a JSON document holds one.

    No JSON column can store a document with NaN in it; a bare NaN or Infinity (a float
    column's value) is fine where the target column holds it. PostgreSQL's spelling as text
    ('NaN', as capture sends a numeric NaN) counts too: not every numeric column reads it.
    """
    bare = False
    for row in (event.before, event.after):
        for column, value in (row or {}).items():
            if isinstance(value, dict | list) and jsonvalue.non_finite_inside(value):
                raise DecodeError(
                    f"column {column!r} holds a JSON document with NaN or Infinity in it, "
                    "which JSON cannot hold: send the number as text"
                )
            bare = bare or jsonvalue.is_non_finite(value) or jsonvalue.is_non_finite_text(value)
    return bare


def decode_event(
    document: Any, event_id: str | None = None, placeholder: str = debezium.PLACEHOLDER
) -> ChangeEvent:
    """Decode one change event (plain or Debezium-wrapped) from parsed JSON."""
    raw = document
    typed = False
    if isinstance(document, dict) and "payload" in document and "op" not in document:
        # Debezium's {"schema": ..., "payload": ...} wrapper: values decoded by the schema.
        document, typed = debezium.unwrap(document, placeholder)
    if not isinstance(document, dict):
        raise DecodeError(f"a change event must be a JSON object, found {_kind(document)}")
    op = document.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise DecodeError(f"'op' must be one of c, u, d, r, t; found {op!r}")
    before = _row(document, "before")
    after = _row(document, "after")
    if op == "d" and before is None:
        raise DecodeError("a delete ('op': 'd') needs 'before' with the row's key")
    if op not in ("d", "t") and after is None:
        raise DecodeError(f"'op': '{op}' needs 'after' with the row's new values")
    source = document.get("source")
    if not isinstance(source, dict):
        raise DecodeError(f"'source' must be an object, found {_kind(source)}")
    system = _text(source, "name")
    table = _text(source, "table")
    schema = source.get("schema") or source.get("db")
    if schema is not None and not isinstance(schema, str):
        raise DecodeError(f"'source.schema' must be text, found {_kind(schema)}")
    position = _position(source)
    explicit_id = document.get("id", event_id)
    if explicit_id is not None and not isinstance(explicit_id, str | int):
        raise DecodeError(f"'id' must be text or a number, found {_kind(explicit_id)}")
    ts = source.get("ts_ms", document.get("ts_ms"))
    if type(ts) is int and not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise DecodeError(f"'ts_ms' must be a time from year 1 to 9999 in ms, found {ts}")
    unavailable = document.get("unavailable") or ()
    if unavailable and (
        not isinstance(unavailable, list) or not all(isinstance(c, str) for c in unavailable)
    ):
        raise DecodeError(f"'unavailable' must be a list of column names, found {unavailable!r}")
    if not typed:
        # Without a schema (schemas disabled) the placeholder is found by its forms alone.
        if before:
            before = debezium.strip_placeholders(before, placeholder)[0]
        if after:
            after, missing = debezium.strip_placeholders(after, placeholder)
            if missing:
                unavailable = [*unavailable, *(c for c in missing if c not in unavailable)]
    types, types_dialect = _types(source)
    return ChangeEvent(
        op=op,
        before=before,
        after=after,
        system=system,
        schema=schema,
        table=table,
        position=position,
        event_id=str(explicit_id) if explicit_id is not None else f"{system}@{position}",
        source_ts_ms=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
        raw=raw,
        unavailable=tuple(unavailable),
        types=types,
        types_dialect=types_dialect,
    )


# source.connector (Debezium's word for the source's kind) -> the dialect of source.types.
_CONNECTORS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql"}


def _types(source: dict[str, Any]) -> tuple[dict[str, str] | None, str]:
    """``source.types`` checked: an object of column name -> type text, or absent."""
    types = source.get("types")
    if types is None:
        return None, "postgresql"
    if not isinstance(types, dict) or not all(type(t) is str for t in types.values()):
        raise DecodeError(
            "'source.types' must be an object of column name -> SQL type text, such as "
            '{"id": "integer", "price": "numeric(12,2)"}'
        )
    connector = source.get("connector", "postgresql")
    dialect = _CONNECTORS.get(connector) if isinstance(connector, str) else None
    # Another connector's words (a Debezium MongoDB source, say) are not a SQL type here.
    return (types, dialect) if dialect else (None, "postgresql")


def _row(document: dict[str, Any], field: str) -> dict[str, Any] | None:
    value = document.get(field)
    if value is not None and not isinstance(value, dict):
        raise DecodeError(f"'{field}' must be an object or null, found {_kind(value)}")
    return value


def _text(source: dict[str, Any], field: str) -> str:
    value = source.get(field)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"'source.{field}' must be non-empty text, found {_kind(value)}")
    return value


def _position(source: dict[str, Any]) -> int:
    for field in ("seq", "lsn"):
        value = source.get(field)
        if value is None:
            continue
        # Digit text is accepted (some producers quote 64-bit numbers), ASCII digits only:
        # str.isdigit() and int() also take "１２３" and other scripts' digits.
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
            return value
        raise DecodeError(
            f"'source.{field}' must be a whole number from 0 to {MAX_POSITION}, found {value!r}"
        )
    if "file" in source and "pos" in source:
        raise DecodeError(
            "a Debezium MySQL-connector position (source.file, pos, row) is not supported yet: "
            "'source.seq' (or Debezium's 'source.lsn') is required, the event's position"
        )
    raise DecodeError("'source.seq' (or Debezium's 'source.lsn') is required: the event's position")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    return "an object"
