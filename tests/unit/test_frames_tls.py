"""syncd's frame reader (``frames.speed_up``) over TLS, against a STOMP server of a few lines.

Over TLS stomp.py makes the socket non-blocking and waits in select() between reads; bytes that
OpenSSL has already decrypted are invisible to select(). A burst followed by silence (no
heart-beats) must therefore arrive in full without help from more traffic.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.broker.connection import Listener, connect_first, quietly_disconnect
from syncd.broker.frames import RECV_BYTES, _receive
from syncd.config import DEFAULTS, BrokerConfig, TlsConfig
from tests.pki import Authority

SMALL_FRAMES = 3000  # ~0.5 MB: dozens of TLS records in one write
BIG_BODY = b"x" * (RECV_BYTES * 3 + 17)  # one frame larger than a whole read


class FakeStompServer:
    """Answers CONNECT, sends one burst of MESSAGE frames, then says nothing at all."""

    def __init__(self, context: ssl.SSLContext, burst: bytes):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._context, self._burst = context, burst
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        raw, _ = self._listener.accept()
        with self._context.wrap_socket(raw, server_side=True) as conn:
            received = b""
            while b"\x00" not in received:
                received += conn.recv(4096)
            conn.sendall(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00")
            conn.sendall(self._burst)
            self._done.wait(30)

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._listener.close()


def message(number: int, body: bytes) -> bytes:
    headers = f"MESSAGE\ndestination:/queue/t\nmessage-id:m{number}\nsubscription:s\n"
    return headers.encode() + f"content-length:{len(body)}\n\n".encode() + body + b"\x00\n"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"), "frames-ca")


@pytest.fixture
def server(authority: Authority) -> Iterator[FakeStompServer]:
    issued = authority.issue("fake-broker", server_names=("DNS:localhost",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(issued.cert), str(issued.key))
    frames = [message(n, f"body {n} ".encode() * 10) for n in range(SMALL_FRAMES)]
    frames.append(message(SMALL_FRAMES, BIG_BODY))
    started = FakeStompServer(context, b"".join(frames))
    yield started
    started.close()


class Collecting(Listener):
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.all_arrived = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.bodies.append(frame.body)
        if len(self.bodies) == SMALL_FRAMES + 1:
            self.all_arrived.set()


def tls_broker(port: int, ca: Path) -> BrokerConfig:
    settings = {k: v for k, v in DEFAULTS["broker"].items() if k != "password_file"}
    settings.update(hosts=(("localhost", port),), connect_timeout_s=5.0)
    settings["tls"] = TlsConfig(ca, None, None)
    return BrokerConfig(**settings)


def test_a_burst_over_tls_arrives_in_full_and_in_order_with_no_traffic_after_it(
    server: FakeStompServer, authority: Authority
) -> None:
    started = time.monotonic()
    conn, listener, _where = connect_first(
        tls_broker(server.port, authority.cert), Collecting, "frames-test", heartbeats=False
    )
    try:
        sock = conn.transport.socket
        tls_and_nodelay = isinstance(sock, ssl.SSLSocket) and sock.getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        arrived = listener.all_arrived.wait(10)
    finally:
        quietly_disconnect(conn)

    assert arrived, f"{len(listener.bodies)} of {SMALL_FRAMES + 1} frames arrived"
    assert time.monotonic() - started < 10
    assert listener.bodies[:3] == [f"body {n} ".encode() * 10 for n in range(3)]
    assert listener.bodies[SMALL_FRAMES - 1] == f"body {SMALL_FRAMES - 1} ".encode() * 10
    assert listener.bodies[-1] == BIG_BODY
    assert tls_and_nodelay
    assert listener.read_error is None


def test_one_read_takes_many_tls_records_and_leaves_nothing_pending(
    server: FakeStompServer, authority: Authority
) -> None:
    context = ssl.create_default_context(cafile=str(authority.cert))
    with context.wrap_socket(
        socket.create_connection(("localhost", server.port)), server_hostname="localhost"
    ) as sock:
        sock.sendall(b"CONNECT\naccept-version:1.2\n\n\x00")
        time.sleep(0.5)  # the whole burst is on its way
        sock.setblocking(False)  # as stomp.py runs a TLS socket

        first = _receive(sock)
        assert first is not None
        # More than one TLS record (16 KiB) per read, up to a plain read's size...
        assert len(first) >= RECV_BYTES
        # ...and nothing decrypted left behind where select() cannot see it.
        assert sock.pending() == 0
        rest = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not rest.endswith(BIG_BODY + b"\x00\n"):
            more = _receive(sock)
            rest += more or b""
            if more is None:
                time.sleep(0.01)
        assert rest.endswith(BIG_BODY + b"\x00\n")
