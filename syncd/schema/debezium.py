"""The column types a Debezium event's schema declares, in PostgreSQL's words.

Asked only for an event that carries a column its target lacks (``on_new_column: add``):
the row struct's fields (``after``, else ``before``) by their logical type name, else by
their Kafka Connect type. What it gives then goes through the same type table as a
catalog's types (:mod:`syncd.schema.types`).
"""

from __future__ import annotations

from typing import Any

_BY_NAME = {
    "io.debezium.data.VariableScaleDecimal": "numeric",
    "io.debezium.time.Date": "date",
    "org.apache.kafka.connect.data.Date": "date",
    "io.debezium.time.Time": "time without time zone",
    "io.debezium.time.MicroTime": "time without time zone",
    "io.debezium.time.NanoTime": "time without time zone",
    "org.apache.kafka.connect.data.Time": "time without time zone",
    "io.debezium.time.ZonedTime": "time with time zone",
    "io.debezium.time.Timestamp": "timestamp without time zone",
    "io.debezium.time.MicroTimestamp": "timestamp without time zone",
    "io.debezium.time.NanoTimestamp": "timestamp without time zone",
    "org.apache.kafka.connect.data.Timestamp": "timestamp without time zone",
    "io.debezium.time.ZonedTimestamp": "timestamp with time zone",
    "io.debezium.data.Json": "jsonb",
    "io.debezium.data.Uuid": "uuid",
    "io.debezium.data.Xml": "xml",
    "io.debezium.data.Enum": "text",
    "io.debezium.data.Bits": "bytea",
    "io.debezium.time.Interval": "interval",
}
_BY_TYPE = {
    "int8": "smallint",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "boolean": "boolean",
    "string": "text",
    "bytes": "bytea",
    "array": "jsonb",
    "map": "jsonb",
    "struct": "jsonb",
}
_DECIMAL = "org.apache.kafka.connect.data.Decimal"


def declared_types(raw: Any) -> dict[str, str]:
    """Column -> type of the row in a ``{"schema": …, "payload": …}`` event; {} without one."""
    schema = raw.get("schema") if isinstance(raw, dict) else None
    fields = schema.get("fields") if isinstance(schema, dict) else None
    if not isinstance(fields, list):
        return {}
    rows = {f.get("field"): f for f in fields if isinstance(f, dict)}
    row = rows.get("after") or rows.get("before")
    columns = row.get("fields") if isinstance(row, dict) else None
    if not isinstance(columns, list):
        return {}
    declared = {}
    for column in columns:
        if isinstance(column, dict) and isinstance(column.get("field"), str):
            kind = _type_of(column)
            if kind:
                declared[column["field"]] = kind
    return declared


def _type_of(column: dict[str, Any]) -> str | None:
    name = column.get("name")
    if name == _DECIMAL:
        parameters = column.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        scale = _digits(parameters.get("scale"))
        precision = _digits(parameters.get("connect.decimal.precision"))
        if scale is not None and precision is not None and 0 < precision <= 1000:
            return f"numeric({precision},{min(scale, precision)})"
        return "numeric"
    if isinstance(name, str) and name in _BY_NAME:
        return _BY_NAME[name]
    kind = column.get("type")
    return _BY_TYPE.get(kind) if isinstance(kind, str) else None


def _digits(value: Any) -> int | None:
    """A whole number Debezium wrote as a number or as its text (parameters are text)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 6 else None
