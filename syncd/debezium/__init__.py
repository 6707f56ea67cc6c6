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
cached, and its text is not even parsed again (``schemas.py``; the values' decoders are in
``values.py``, the placeholder's forms in ``placeholder.py``). A value that does not fit its
schema — a hostile or broken producer — is a :class:`~syncd.errors.DecodeError` naming the
field: the event is dead-lettered (``decode``), the daemon carries on.

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

from typing import Any

from syncd.debezium import schemas
from syncd.debezium.placeholder import PLACEHOLDER, strip_placeholders
from syncd.debezium.schemas import parse_known, remember_schema
from syncd.debezium.values import ZonedText
from syncd.errors import DecodeError

__all__ = [
    "PLACEHOLDER",
    "ZonedText",
    "parse_known",
    "remember_schema",
    "skip_reason",
    "strip_placeholders",
    "unwrap",
]


# -- messages that are not row changes ---------------------------------------------------------


def skip_reason(document: Any) -> str | None:
    """Why a decoded message body (or array element) is no row change to apply, or None.

    ``tombstone``: a wrapper with a null payload — Kafka's delete marker as a bridge may
    render it. An empty or bare ``null`` body is no message at all and is dead-lettered, as
    any malformed body (syncd.values: nothing a producer sends is silently dropped).
    ``transaction``: Debezium's BEGIN/END
    transaction metadata. ``heartbeat``: a payload of ``ts_ms`` alone. ``message``: a PostgreSQL
    logical-decoding message (``op: m``), which changes no row.
    """
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


def unwrap(document: dict[str, Any], placeholder: str = PLACEHOLDER) -> tuple[Any, bool]:
    """The payload of a ``{schema, payload}`` wrapper, its rows decoded by the schema; and
    whether the schema described them.

    Returns a new payload: ``before`` and ``after`` decoded, placeholders left out of them and
    ``after``'s named in ``unavailable``. A wrapper whose schema describes no fields
    (``"schema": null``, or a struct without ``fields``, as hand-written wrappers have) gives
    the payload as it is. DecodeError when the schema is malformed or a value does not fit it.
    """
    payload = document["payload"]
    schema = document.get("schema")
    if schema is None or not isinstance(payload, dict):
        return payload, False  # events.decode_event says what is wrong with a non-object
    if isinstance(schema, dict) and "fields" not in schema:
        return payload, False
    try:
        envelope = schemas.CACHE.envelope(schema, placeholder)
    except RecursionError:
        raise DecodeError("'schema' is nested too deeply to decode") from None
    return envelope.decode(payload), True
