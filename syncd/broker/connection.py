"""Opening a STOMP connection: the first of ``broker.hosts`` that answers, each with a deadline.

stomp.py's ``connect(wait=True)`` never times out and its own host rotation retries on a
schedule of its own; here every host gets ``connect_timeout_s`` and the hosts are tried once,
in the configured order (failover), so a caller's own loop decides when to try again.

Every connection syncd opens (the daemon, captures, publishing, ``status``, ``dlq``) comes
through :func:`connect_first`, so ``broker.tls`` secures all of them. A refusal is said as
such: :class:`BrokerLoginRefused` for an ERROR in answer to CONNECT, :class:`BrokerTLSError`
for a certificate either side did not trust.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import stomp
import stomp.exception

from syncd.broker import frames, tls
from syncd.config import BrokerConfig, TlsConfig
from syncd.errors import BrokerLoginRefused, BrokerRefused, BrokerTLSError, BrokerUnavailable

STOMP_ERRORS = (stomp.exception.StompException, OSError)


class Listener(stomp.ConnectionListener):  # type: ignore[misc]
    """Runs on stomp.py's receiver thread: notes CONNECTED and the broker's ERROR, never blocks.

    Subclasses add their own hand-overs; they call these methods through ``super()``.
    """

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.refused = threading.Event()  # an ERROR frame: a refused login, a bad frame
        self.closed = threading.Event()  # the connection ended (set before subclasses hear of it)
        self.error: str | None = None  # the first ERROR's message
        self.cause: str | None = None  # the first ERROR's that answers no receipt
        self.cause_arrived = threading.Event()
        self.read_error: Exception | None = None  # why reading ended, if not a clean close

    def on_connected(self, frame: Any) -> None:
        self.connected.set()

    def on_error(self, frame: Any) -> None:
        message = frame.headers.get("message", "") or str(frame.body)[:200]
        if self.error is None:
            self.error = message
        # An ERROR that answers no receipt is about a frame of its own (a SEND the user may not
        # make); the COMMIT that such a SEND spoils gets one with its receipt-id ("COMMIT
        # FAILED: Transaction marked rollback only"), before or after it.
        if "receipt-id" not in frame.headers and self.cause is None:
            self.cause = message
            self.cause_arrived.set()
        self.refused.set()

    def on_disconnected(self) -> None:
        self.closed.set()

    def read_failed(self, error: Exception) -> None:
        self.read_error = error


L = TypeVar("L", bound=Listener)


def connect_first(
    config: BrokerConfig,
    make_listener: Callable[[], L],
    client_name: str,
    heartbeats: bool = True,
) -> tuple[Any, L, str]:
    """A connected ``stomp.Connection12``, its listener, and the "host:port" it reached.

    Raises :class:`BrokerRefused` (a refused login, a certificate not trusted) if a host
    refused and none accepted, else :class:`BrokerUnavailable`.
    """
    failures: list[tuple[str, BrokerUnavailable]] = []
    for host, port in config.hosts:
        listener = make_listener()
        try:
            conn = _connect_to(config, host, port, listener, client_name, heartbeats)
        except BrokerUnavailable as exc:
            failures.append((f"{host}:{port}", exc))
            continue
        return conn, listener, f"{host}:{port}"
    refusals = [exc for _where, exc in failures if isinstance(exc, BrokerRefused)]
    if len(failures) == 1 and refusals:
        raise refusals[0]  # it names its host already
    # A refusal outranks an outage: it is the one that needs a person to act.
    kind = type(refusals[0]) if refusals else BrokerUnavailable
    reasons = "; ".join(
        str(exc) if isinstance(exc, BrokerRefused) else f"{where}: {exc}" for where, exc in failures
    )
    raise kind("no broker answered: " + reasons)


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
    if config.tls is not None:
        tls.use_tls(conn, host, port, config.tls)
    conn.set_listener("syncd", listener)
    frames.speed_up(conn, failed=listener.read_failed)
    try:
        conn.connect(
            config.user,
            config.password,
            wait=False,
            headers={"client-id": f"{client_name}-{uuid.uuid4().hex[:8]}"},
        )
    except STOMP_ERRORS as exc:
        if config.tls is not None:
            reason = _tls_failure(config.tls, host, port, listener, config.connect_timeout_s)
            if reason is not None:
                raise BrokerTLSError(
                    f"TLS with the broker at {host}:{port} failed: {reason}"
                ) from exc
        raise BrokerUnavailable(f"cannot connect: {str(exc) or type(exc).__name__}") from exc
    deadline = time.monotonic() + config.connect_timeout_s
    # An ERROR frame (a refused login) or the broker hanging up ends the wait early.
    while not listener.connected.wait(0.05):
        if listener.refused.is_set() or listener.closed.is_set() or time.monotonic() >= deadline:
            break
    if not listener.connected.is_set():
        quietly_disconnect(conn)
        raise _not_connected(config, host, port, listener)
    # stomp.py leaves Nagle on: BEGIN, SEND and COMMIT, each a small write, would wait for the
    # broker's delayed TCP ACK (a confirmed publish took 46 ms, 2 ms without it).
    with contextlib.suppress(OSError, AttributeError):
        conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _tls_failure(
    config: TlsConfig, host: str, port: int, listener: Listener, timeout_s: float
) -> str | None:
    """Why connecting over TLS failed, if TLS is why."""
    if isinstance(listener.read_error, ssl.SSLError):
        # The broker's alert about the client certificate, read before CONNECT went out.
        return tls.describe(listener.read_error, config)
    # stomp.py only logs why the handshake failed; the same handshake again tells it.
    return tls.handshake_failure(host, port, config, timeout_s)


def _not_connected(
    config: BrokerConfig, host: str, port: int, listener: Listener
) -> BrokerUnavailable:
    """Why CONNECT got no CONNECTED, said so that the one who must act knows what to do."""
    where = f"the broker at {host}:{port}"
    if listener.error is not None:
        # ActiveMQ answers a CONNECT it refuses with an ERROR and hangs up; the only CONNECT
        # it refuses for a well-formed frame is a login (e.g. "User name [x] or password is
        # invalid."). The password is never part of the message.
        who = (
            f"for user {config.user}" if config.user else "without a user (broker.user is not set)"
        )
        return BrokerLoginRefused(f"{where} refused the login {who}: {listener.error}")
    if config.tls is not None and isinstance(listener.read_error, ssl.SSLError):
        # TLS 1.3: the client's side of the handshake ends before the broker has checked the
        # client certificate, so its verdict arrives as an alert at the first read.
        return BrokerTLSError(
            f"TLS with {where} failed: {tls.describe(listener.read_error, config.tls)}"
        )
    if listener.closed.is_set():
        hint = "" if config.tls else " (if that port speaks TLS, set broker.tls)"
        return BrokerUnavailable(f"{where} closed the connection before answering CONNECT{hint}")
    return BrokerUnavailable(f"no CONNECTED within {config.connect_timeout_s:g} s")


def quietly_disconnect(conn: Any) -> None:
    """Disconnect, ignoring a connection that is already gone."""
    try:
        conn.disconnect()
    except (OSError, *STOMP_ERRORS, RuntimeError):
        pass
