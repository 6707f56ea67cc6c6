import json
import logging

from syncd.logs import JsonFormatter, KeyValueFormatter


def record(message: str, context: dict[str, object] | None = None) -> logging.LogRecord:
    made = logging.LogRecord("syncd.consumer", logging.WARNING, "f.py", 1, message, None, None)
    if context is not None:
        made.context = context
    return made


def test_key_value_lines_quote_what_needs_quotes() -> None:
    line = KeyValueFormatter(timestamps=False).format(
        record("dead-lettered", {"mapping": "customers", "key": "[7]", "error": 'a "b" c'})
    )
    assert line == (
        "level=warning logger=syncd.consumer msg=dead-lettered mapping=customers key=[7] "
        'error="a \\"b\\" c"'
    )


def test_json_lines_carry_the_context_as_fields() -> None:
    line = JsonFormatter().format(record("dead-lettered", {"mapping": "customers", "attempts": 3}))
    document = json.loads(line)
    assert document["msg"] == "dead-lettered"
    assert (document["mapping"], document["attempts"], document["level"]) == (
        "customers",
        3,
        "warning",
    )
