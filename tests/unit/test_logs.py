import json
import logging
import socket

import pytest

from syncd.broker.connection import Listener, connect_first
from syncd.config import DEFAULTS, BrokerConfig
from syncd.daemon.logs import JsonFormatter, KeyValueFormatter, setup_logging
from syncd.errors import BrokerUnavailable


def record(message: str, context: dict[str, object] | None = None) -> logging.LogRecord:
    made = logging.LogRecord("syncd.pipeline.loop", logging.WARNING, "f.py", 1, message, None, None)
    if context is not None:
        made.context = context
    return made


def test_key_value_lines_quote_what_needs_quotes() -> None:
    line = KeyValueFormatter(timestamps=False).format(
        record("dead-lettered", {"mapping": "customers", "key": "[7]", "error": 'a "b" c'})
    )
    assert line == (
        "level=warning logger=syncd.pipeline.loop msg=dead-lettered mapping=customers key=[7] "
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


def test_stomp_py_does_not_repeat_a_failed_connect_that_syncd_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe closes
    settings = {k: v for k, v in DEFAULTS["broker"].items() if k != "password_file"}
    config = BrokerConfig(**{**settings, "hosts": (("127.0.0.1", port),), "connect_timeout_s": 1})
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("info", "text")
        with pytest.raises(BrokerUnavailable):
            connect_first(config, Listener, "test")
        assert "could not connect" not in capsys.readouterr().err
        setup_logging("debug", "text")  # ... but at debug level stomp.py's view is kept
        with pytest.raises(BrokerUnavailable):
            connect_first(config, Listener, "test")
        assert "could not connect to host 127.0.0.1" in capsys.readouterr().err
    finally:
        root.handlers[:], root.level = handlers, level
