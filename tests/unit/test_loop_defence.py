"""The apply loop's last line of defence: what decoding or routing did not foresee dead-letters
that message or event, with the exception's name; it never ends the loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncd.broker import Message
from syncd.config import DEFAULTS, ApplyConfig
from syncd.deadletter.letters import ErrorClass
from syncd.pipeline import loop
from syncd.pipeline.loop import WHOLE_MESSAGE, ApplyLoop, _Pending

EVENT = {"op": "c", "after": {"id": 1}, "source": {"name": "crm", "table": "t", "seq": 1}}


def load_defaults_apply() -> ApplyConfig:
    return ApplyConfig(**DEFAULTS["apply"])


class _BrokenRouter:
    def changes_for(self, event: Any) -> list[Any]:
        raise KeyError("a bug")


def _loop() -> ApplyLoop:
    loop = ApplyLoop.__new__(ApplyLoop)  # only the router is used by decoding and routing
    loop._router = _BrokenRouter()  # type: ignore[assignment]
    loop._settings = load_defaults_apply()
    return loop


def _message(body: Any) -> Message:
    return Message(json.dumps(body).encode(), {}, "/queue/syncd.crm", "m1", "a1", 0)


def test_an_unforeseen_routing_error_dead_letters_that_event_alone() -> None:
    item = _Pending(_message([EVENT, {"op": "?"}]))
    assert _loop()._decode_and_route(item) == []
    assert item.failures[0].error_class is ErrorClass.MAPPING
    assert item.failures[0].text == "cannot process the event: KeyError: 'a bug'"
    assert item.failures[1].error_class is ErrorClass.DECODE


def test_an_unforeseen_decoding_error_dead_letters_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: Any) -> list[Any]:
        raise IndexError("deep inside")

    monkeypatch.setattr(loop, "decode_body", broken)
    item = _Pending(_message(EVENT))
    assert _loop()._decode_and_route(item) == []
    assert item.failures[WHOLE_MESSAGE].error_class is ErrorClass.DECODE
    assert "IndexError: deep inside" in item.failures[WHOLE_MESSAGE].text
