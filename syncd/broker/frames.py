"""A faster reading of incoming STOMP frames for syncd's own connections.

stomp.py parses every frame with regular expressions (one per header, for escapes) and copies
its headers; it then notifies each listener twice per MESSAGE, sorting the listeners under a
lock each time. Measured here: 23 µs to parse one ActiveMQ MESSAGE frame of 13 headers, most
of the receiver thread's work per message, and that thread shares the GIL with the apply loop.
``parse_frame`` gives the same ``Frame`` for 3 µs; ``speed_up`` installs it (and a direct
MESSAGE notification) on one connection's transport — never on stomp.py itself, so any other
stomp.py client in the process is left as it was.

Tied to stomp.py 9's transport (pyproject pins ``stomp.py>=9,<10``); the tests check that the
hooks exist and that ``parse_frame`` agrees with stomp.py's own on every kind of frame.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from typing import Any

import stomp.exception
from stomp.utils import HEARTBEAT_FRAME, Frame

_ESCAPES = {"\\r": "\r", "\\n": "\n", "\\c": ":", "\\\\": "\\"}
_ESCAPE_RE = re.compile(r"\\.")


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    # An unknown escape is kept as it is, as stomp.py does.
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(0), m.group(0)), text)


def parse_frame(frame: bytes) -> Any:
    """The ``stomp.utils.Frame`` of one raw frame (without its NUL), or None for blank input.

    Same rules as ``stomp.utils.parse_frame``: the preamble ends at the first blank line (LF or
    CRLF), lines end in LF or CRLF, leading blank lines are skipped, a header line needs a
    non-empty name before its colon, and the first of repeated headers wins.
    """
    lf, crlf = frame.find(b"\n\n"), frame.find(b"\r\n\r\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        preamble_end, body_start = crlf, crlf + 4
    elif lf != -1:
        preamble_end, body_start = lf, lf + 2
    else:
        preamble_end = body_start = len(frame)
    text = frame[:preamble_end].decode()
    lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")
    first = 0
    while first < len(lines) and not lines[first]:
        first += 1
    if first >= len(lines):
        return None
    escaped = "\\" in text
    headers: dict[str, str] = {}
    # Taken last to first, so that the first of repeated headers is the one left standing.
    for line in reversed(lines[first + 1 :]):
        name, colon, value = line.partition(":")
        if colon and name:
            if escaped and "\\" in line:
                name, value = _unescape(name), _unescape(value)
            headers[name] = value
    return _frame(lines[first], headers, frame[body_start:])


def _frame(command: str, headers: dict[str, str], body: bytes) -> Any:
    # Frame.__init__ copies the headers into original_headers, which nothing here reads.
    made = Frame.__new__(Frame)
    made.cmd, made.headers, made.original_headers, made.body = command, headers, headers, body
    return made


def speed_up(conn: Any, failed: Callable[[Exception], None] | None = None) -> None:
    """Read ``conn``'s frames with :class:`FrameReader` and hand MESSAGE frames straight over.

    For a MESSAGE, stomp.py would call every listener's ``on_before_message`` (a no-op for
    syncd's listener and for stomp.py's heart-beat listener) and then ``on_message``; here only
    ``on_message`` is called, with the listeners as they are at that moment. ``failed`` hears
    why reading ended when it was not a clean close (a TLS alert, a reset).
    """
    transport = conn.transport
    reader = FrameReader()
    process_frame = transport.process_frame
    listeners = transport.listeners

    def read_frames() -> None:
        try:
            data = _receive(transport.socket)
        except InterruptedError:
            return
        except Exception as exc:  # a closed or reset socket, as stomp.py's reader treats it
            if failed is not None:
                failed(exc)
            data = b""
        if data is None:
            return  # TLS: nothing decrypted yet
        if not data:
            raise stomp.exception.ConnectionClosedException()
        for frame in reader.feed(data):
            if frame.cmd == "MESSAGE":
                for listener in list(listeners.values()):
                    listener.on_message(frame)
            else:
                process_frame(frame, b"")

    # An instance attribute: stomp.py's receiver loop looks the method up on each pass.
    transport._BaseTransport__read_frames = read_frames


def _receive(sock: Any) -> bytes | None:
    """What the socket has: b"" when closed, None when a TLS socket has nothing yet.

    A plain socket is blocking here: one recv. Over TLS stomp.py makes the socket non-blocking
    and waits in select() on it between reads, and one recv returns at most one TLS record
    (16 KiB). Decrypted bytes that OpenSSL holds (``pending()``) are invisible to select(), so
    a read stops only when they are taken too: else a frame could wait there for the next
    heart-beat. Up to RECV_BYTES per call, as on a plain socket; what is still on the wire then
    wakes select() at once.
    """
    if not isinstance(sock, ssl.SSLSocket):
        data: bytes = sock.recv(RECV_BYTES)
        return data
    chunks: list[bytes] = []
    size = 0
    while size < RECV_BYTES or sock.pending():
        try:
            chunk = sock.recv(RECV_BYTES)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        except Exception:
            if chunks:
                break  # hand over what came first; the next read meets the failure again
            raise
        if not chunk:
            if chunks:
                break  # the close is seen again at the next read
            return b""
        chunks.append(chunk)
        size += len(chunk)
    if not chunks:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


RECV_BYTES = 256 * 1024  # per recv: more frames per turn of the GIL than stomp.py's 16 KiB


class FrameReader:
    """Cuts a byte stream into frames: by content-length (ActiveMQ always sends it) or at the
    NUL; a lone EOL between frames is a heart-beat.

    stomp.py's reader re-slices its whole buffer after every frame (quadratic in the frames a
    read brings) and runs two regular expressions per frame; this walks the buffer once.
    """

    def __init__(self) -> None:
        self._rest = b""
        self._after_frame = False  # the last read ended with a frame: an EOL may follow it

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._rest + data if self._rest else data
        frames: list[Any] = []
        pos, size, after_frame = 0, len(buffer), self._after_frame
        while pos < size:
            if buffer[pos] in _EOL_BYTES:
                if buffer[pos] == 13 and pos + 1 == size:
                    break  # the LF of a CRLF is still to come
                # Right after a frame it is that frame's optional EOL (ActiveMQ sends one
                # after every frame); anywhere else it is the broker's heart-beat.
                if not after_frame:
                    frames.append(HEARTBEAT_FRAME)
                after_frame = False
                pos += 2 if buffer.startswith(b"\r\n", pos) else 1
                continue
            end = _frame_end(buffer, pos)
            if end < 0:
                break
            frame = parse_frame(buffer[pos:end])
            if frame is not None:
                frames.append(frame)
            pos, after_frame = end + 1, True  # past the NUL
        self._rest, self._after_frame = buffer[pos:], after_frame
        return frames


_EOL_BYTES = (10, 13)


def _frame_end(buffer: bytes, start: int) -> int:
    """The index of the NUL that ends the frame starting at ``start``; -1 if not all here."""
    lf = buffer.find(b"\n\n", start)
    # Only up to the first LF LF: searching the rest of a large read for each frame would make
    # a read's frames cost quadratic time.
    crlf = buffer.find(b"\r\n\r\n", start, lf + 2 if lf >= 0 else len(buffer))
    if lf < 0 and crlf < 0:
        return -1
    header_end, body_start = (
        (crlf, crlf + 4) if crlf >= 0 and (lf < 0 or crlf < lf) else (lf, lf + 2)
    )
    length_at = buffer.find(b"\ncontent-length:", start, header_end)
    if length_at >= 0:
        digits_end = buffer.find(b"\n", length_at + 16, header_end + 1)
        length = int(buffer[length_at + 16 : digits_end].rstrip(b"\r"))
        end = body_start + length
        return end if end < len(buffer) else -1
    return buffer.find(b"\x00", body_start)
