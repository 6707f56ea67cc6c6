"""syncd's STOMP frame parser against stomp.py's own, and its hooks into stomp.py."""

from __future__ import annotations

import itertools

import pytest
import stomp
from stomp.utils import parse_frame as stomp_parse_frame

from syncd.broker.frames import parse_frame, speed_up

MESSAGE = (
    b"MESSAGE\ncontent-length:11\nexpires:0\ndestination:/queue/syncd.crm\nsubscription:1\n"
    b"JMSXGroupID:public.customers:[7]\nmessage-id:ID:h-1-2:1:1:1:9\npersistent:true\n"
    b"ack:ID:h-1-2:5:1\n\n" + b'{"op":"c"}\n'
)
FRAMES = [
    MESSAGE,
    MESSAGE.replace(b"\n", b"\r\n"),
    b"\n\nRECEIPT\nreceipt-id:r-1\n\n",
    b"\r\nCONNECTED\r\nversion:1.2\r\nheart-beat:2000,2000\r\n\r\n",
    b"ERROR\nmessage:bad\\cthing\\nhere\\\\\\r\nx\\ty:z\n\nbody with \x00 inside",
    b"MESSAGE\nrepeated:first\nrepeated:second\n:no-name\nno-colon\nempty:\nk:v:w\n\n",
    b"MESSAGE\nd\\cstination:/queue/a\n\n\n\nbody after blank lines",
    b"MESSAGE\nutf8:\xc3\xa9t\xc3\xa9\n\n\xc3\xa9",
    b"MESSAGE\nno-body:1",
    b"COMMAND",
    b"",
    b"\n\n",
    b"\r\n",
]


def _shape(frame: object) -> object:
    if frame is None:
        return None
    return (frame.cmd, frame.headers, frame.body)  # type: ignore[attr-defined]


@pytest.mark.parametrize("raw", FRAMES)
def test_parse_frame_agrees_with_stomp_py(raw: bytes) -> None:
    assert _shape(parse_frame(raw)) == _shape(stomp_parse_frame(raw))


def test_parse_frame_agrees_on_every_mix_of_escapes_and_line_ends() -> None:
    pieces = ["a", "\\c", "\\n", "\\r", "\\\\", "\\t", ":", "é"]
    for name, value in itertools.product(pieces, repeat=2):
        for eol in (b"\n", b"\r\n"):
            raw = b"MESSAGE" + eol + f"{name}x:{value}y".encode() + eol + eol + b"b"
            assert _shape(parse_frame(raw)) == _shape(stomp_parse_frame(raw)), raw


def test_speed_up_finds_the_stomp_py_internals_it_replaces() -> None:
    conn = stomp.Connection12([("127.0.0.1", 1)], auto_decode=False)
    speed_up(conn)
    assert callable(conn.transport._BaseTransport__read_frames)
    # The receiver loop calls self.__read_frames(): the instance attribute must win.
    assert conn.transport._BaseTransport__read_frames.__name__ == "read_frames"
