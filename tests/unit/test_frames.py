"""syncd's STOMP frame parser against stomp.py's own, and its hooks into stomp.py."""

from __future__ import annotations

import inspect
import itertools

import pytest
import stomp
from stomp.utils import parse_frame as stomp_parse_frame

from syncd.broker.frames import FrameReader, parse_frame, speed_up

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
    # speed_up shadows a private method of stomp.py's transport: if a stomp.py release renamed
    # it, or its receiver loop stopped calling it, syncd's reader would silently not be used.
    base = stomp.transport.BaseTransport
    assert callable(getattr(base, "_BaseTransport__read_frames", None)), "the hook is gone"
    loop = inspect.getsource(base._BaseTransport__io_loop)
    assert "self.__read_frames()" in loop, "the receiver loop no longer reads through the hook"
    conn = stomp.Connection12([("127.0.0.1", 1)], auto_decode=False)
    speed_up(conn)
    # Looked up on the instance on each pass, the instance attribute wins over the class's.
    assert conn.transport._BaseTransport__read_frames is not base._BaseTransport__read_frames
    assert conn.transport._BaseTransport__read_frames.__qualname__.startswith("speed_up.")


def _stream() -> tuple[bytes, list[object]]:
    with_nul = b"MESSAGE\ncontent-length:6\nack:a\\c1\n\nab\x00cd\n"
    no_length = b"RECEIPT\nreceipt-id:r-9\n\n"
    crlf = b"MESSAGE\r\ncontent-length:2\r\nid:x\r\n\r\n{}"
    frames = [MESSAGE, with_nul, no_length, crlf]
    stream = b"\n" + b"\x00\n".join(frames) + b"\x00" + b"\r\n"
    # The leading EOL is a heart-beat; the EOL after each frame is the frame's optional EOL.
    expected: list[object] = [("heartbeat", {}, None)]
    expected += [_shape(stomp_parse_frame(raw)) for raw in frames]
    return stream, expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 100_000])
def test_frame_reader_cuts_a_stream_however_it_is_split(chunk: int) -> None:
    stream, expected = _stream()
    reader = FrameReader()
    frames = []
    for start in range(0, len(stream), chunk):
        frames += reader.feed(stream[start : start + chunk])
    assert [_shape(f) for f in frames] == expected


def test_frame_reader_keeps_a_body_that_holds_nul_whole() -> None:
    [frame] = FrameReader().feed(b"MESSAGE\ncontent-length:3\n\na\x00b\x00")
    assert frame.body == b"a\x00b"


def test_frame_reader_reports_each_idle_heart_beat() -> None:
    reader = FrameReader()
    assert [f.cmd for f in reader.feed(b"RECEIPT\nreceipt-id:1\n\n\x00\n")] == ["RECEIPT"]
    assert [f.cmd for f in reader.feed(b"\n")] == ["heartbeat"]
    assert [f.cmd for f in reader.feed(b"\n")] == ["heartbeat"]
