"""Opening a STOMP connection: the first of ``broker.hosts`` that answers, each with a deadline.

stomp.py's ``connect(wait=True)`` never times out and its own host rotation retries on a
schedule of its own; here every host gets ``connect_timeout_s`` and the hosts are tried once,
in the configured order (failover), so a caller's own loop decides when to try again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import stomp
import stomp.exception

from syncd.broker import frames
from syncd.config import BrokerConfig
from syncd.errors import BrokerUnavailable

STOMP_ERRORS = (stomp.exception.StompException, OSError)


class Listener(stomp.ConnectionListener):  # type: ignore[misc]
    """Runs on stomp.py's receiver thread: notes CONNECTED and the broker's ERROR, never blocks.

    Subclasses add their own hand-overs; they call these methods through ``super()``.
    """

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.refused = threading.Event()  # an ERROR frame: a refused login, a bad frame
        self.error: str | None = None

    def on_connected(self, frame: Any) -> None:
        self.connected.set()

    def on_error(self, frame: Any) -> None:
        self.error = frame.headers.get("message", "") or str(frame.body)[:200]
        self.refused.set()


L = TypeVar("L", bound=Listener)


def connect_first(
    config: BrokerConfig,
    make_listener: Callable[[], L],
    client_name: str,
    heartbeats: bool = True,
) -> tuple[Any, L, str]:
    """A connected ``stomp.Connection12``, its listener, and the "host:port" it reached."""
    failures = []
    for host, port in config.hosts:
        listener = make_listener()
        try:
            conn = _connect_to(config, host, port, listener, client_name, heartbeats)
        except BrokerUnavailable as exc:
            failures.append(f"{host}:{port}: {exc}")
            continue
        return conn, listener, f"{host}:{port}"
    raise BrokerUnavailable("no broker answered: " + "; ".join(failures))


def _connect_to(
    config: BrokerConfig,
    host: str,
    port: int,
    listener: Listener,
    client_name: str,
    heartbeats: bool,
) -> Any:
    heartbeat = config.heartbeat_ms if heartbeats else 0
    conn = stomp.Connection12(
        [(host, port)],
        heartbeats=(heartbeat, heartbeat),
        auto_decode=False,
        timeout=config.connect_timeout_s,
        reconnect_attempts_max=1,
        # After sending any frame, ActiveMQ's next heart-beat comes up to ~1.9 intervals
        # later (measured: 3.86 s at 2 s); stomp.py's default 1.5 would drop healthy links.
        heart_beat_receive_scale=2.5,
    )
    conn.set_listener("syncd", listener)
    frames.speed_up(conn)
    try:
        conn.connect(
            config.user,
            config.password,
            wait=False,
            headers={"client-id": f"{client_name}-{uuid.uuid4().hex[:8]}"},
        )
    except STOMP_ERRORS as exc:
        raise BrokerUnavailable(f"cannot connect: {str(exc) or type(exc).__name__}") from exc
    deadline = time.monotonic() + config.connect_timeout_s
    # An ERROR frame (a refused login) ends the wait early, with the broker's reason.
    while not listener.connected.wait(0.05):
        if listener.refused.is_set() or time.monotonic() >= deadline:
            break
    if not listener.connected.is_set():
        quietly_disconnect(conn)
        raise BrokerUnavailable(
            listener.error or f"no CONNECTED within {config.connect_timeout_s:g} s"
        )
    # stomp.py leaves Nagle on: BEGIN, SEND and COMMIT, each a small write, would wait for the
    # broker's delayed TCP ACK (a confirmed publish took 46 ms, 2 ms without it).
    with contextlib.suppress(OSError, AttributeError):
        conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def quietly_disconnect(conn: Any) -> None:
    """Disconnect, ignoring a connection that is already gone."""
    try:
        conn.disconnect()
    except (OSError, *STOMP_ERRORS, RuntimeError):
        pass
