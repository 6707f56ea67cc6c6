"""Log lines for journald: ``key=value`` by default, one JSON object per line when configured.

Context travels as ``extra={"context": {...}}`` (mapping, table, key, event id, attempt…) so
both formats carry it as fields rather than as prose to be parsed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any


def _quoted(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class KeyValueFormatter(logging.Formatter):
    """``level=warning logger=syncd.pipeline.loop msg="dead-lettered" mapping=customers key=[7]``.

    Under systemd (``$JOURNAL_STREAM``) journald stamps the time; elsewhere a ``ts`` leads.
    """

    def __init__(self, timestamps: bool):
        super().__init__()
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {}
        if self._timestamps:
            fields["ts"] = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        fields.update(level=record.levelname.lower(), logger=record.name, msg=record.getMessage())
        fields.update(getattr(record, "context", {}))
        line = " ".join(f"{key}={_quoted(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def setup_logging(level: str, format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter(timestamps=not os.environ.get("JOURNAL_STREAM")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # stomp.py's INFO is per-frame chatter, and what it warns of (a failed connect or send,
    # with a traceback) syncd says itself, translated: its own words only when debugging.
    quiet = logging.WARNING if level == "debug" else logging.CRITICAL
    logging.getLogger("stomp.py").setLevel(quiet)
