"""Test helpers that drive syncd the way its users do: config files, a plain STOMP client, and
``syncd run`` as a subprocess that tests can signal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stomp

REPO = Path(__file__).resolve().parent.parent


def write_config(
    directory: Path,
    broker_port: int,
    database_url: str,
    mappings_yaml: str,
    *,
    dead_letter_queue: str,
    extra: str = "",
) -> Path:
    """A config.yaml and one mapping file in ``directory``; returns the config's path."""
    (directory / "mappings").mkdir(parents=True, exist_ok=True)
    (directory / "mappings" / "test.yaml").write_text(mappings_yaml)
    config = directory / "config.yaml"
    config.write_text(
        f"""
broker:
  hosts: ["127.0.0.1:{broker_port}"]
  heartbeat_ms: 2000
  dead_letter_queue: {dead_letter_queue}
databases:
  warehouse: {{url: "{database_url}"}}
mappings: mappings/
{extra}
"""
    )
    return config


def syncd(
    *args: str, stdin: str | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the `syncd` command line to completion."""
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )


class Daemon:
    """``syncd run -c CONFIG [ARGS]`` as a child process, with its stderr kept in a file."""

    def __init__(self, config: Path, *args: str, log_path: Path | None = None):
        self.config = config
        self.args = args  # more `syncd run` options, e.g. "--only", "capture"
        # Several daemons on one config (one job) each keep a log of their own.
        self.log_path = log_path or config.parent / "syncd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "-c", str(self.config), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        return self

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class StompClient:
    """A plain stomp.py client, as any outside publisher, consumer or operator would use: the
    one STOMP client of the tests.

    What its subscriptions deliver is collected (``messages``), taken one by one
    (``receive``) or per destination (``drain``); ``on_message(client, message)`` instead
    hands each to the test as it arrives (to ack it, say).
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        heartbeats: tuple[int, int] = (0, 0),
        on_message: Callable[[StompClient, Received], None] | None = None,
        name: str = "client",
    ):
        self.name = name
        self.conn = stomp.Connection12([(host, port)], heartbeats=heartbeats, auto_decode=False)
        self._received: list[Received] = []
        self._changed = threading.Condition()
        self._on_message = on_message
        client = self

        class Listener(stomp.ConnectionListener):  # type: ignore[misc]
            def on_message(self, frame: Any) -> None:
                message = Received(dict(frame.headers), frame.body)
                if client._on_message is not None:
                    client._on_message(client, message)
                    return
                with client._changed:
                    client._received.append(message)
                    client._changed.notify_all()

        self.conn.set_listener("test", Listener())
        self.conn.connect(wait=True)

    def send(self, destination: str, body: str | bytes, **headers: str) -> None:
        self.conn.send(
            destination,
            body if isinstance(body, bytes) else body.encode(),
            headers={"persistent": "true", "content-type": "application/json", **headers},
        )

    def send_events(self, destination: str, events: Iterable[Any], receipt: bool = True) -> None:
        """One message per item (an event, or a list of events for an array message)."""
        for item in events:
            self.send(destination, json.dumps(item))
        if receipt:
            self.flush()

    def send_many(
        self, destination: str, bodies_and_headers: list[tuple[str, dict[str, str]]]
    ) -> None:
        """Send in transactions of 500: KahaDB syncs once per commit, not once per message."""
        for start in range(0, len(bodies_and_headers), 500):
            transaction = self.conn.begin()
            for body, headers in bodies_and_headers[start : start + 500]:
                self.conn.send(
                    destination,
                    body=body.encode(),
                    headers={"persistent": "true", **headers},
                    transaction=transaction,
                )
            self.conn.commit(transaction)

    def flush(self) -> None:
        """Wait until the broker has processed everything sent so far (a receipt)."""
        done = threading.Event()
        receipt_id = f"flush-{time.monotonic_ns()}"

        class Waiter(stomp.ConnectionListener):  # type: ignore[misc]
            def on_receipt(self, frame: Any) -> None:
                if frame.headers.get("receipt-id") == receipt_id:
                    done.set()

        self.conn.set_listener("flush", Waiter())
        self.conn.begin(receipt_id)
        self.conn.commit(receipt_id, headers={"receipt": receipt_id})
        assert done.wait(30), "the broker did not confirm the sends"
        self.conn.remove_listener("flush")

    def subscribe(
        self, destination: str, id: str, ack: str = "auto", headers: dict[str, str] | None = None
    ) -> None:
        self.conn.subscribe(destination, id=id, ack=ack, headers=headers or {})

    def ack(self, message: Received) -> None:
        self.conn.ack(message.headers["ack"])

    @property
    def messages(self) -> list[Received]:
        """What has arrived and was not taken yet, oldest first (nothing is taken)."""
        with self._changed:
            return list(self._received)

    def receive(self, timeout_s: float = 10) -> Received:
        """Take the oldest message that arrived, waiting up to ``timeout_s`` for one."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._received), timeout_s):
                raise AssertionError(f"no message within {timeout_s} s")
            return self._received.pop(0)

    def settled(
        self, expected_count: int, timeout_s: float = 30, quiet_s: float = 1.5
    ) -> list[Received]:
        """The messages once ``expected_count`` arrived (or time ran out) and then none more
        for ``quiet_s``: a duplicate or an extra one has its chance to show up."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._received) >= expected_count, timeout_s)
            while self._changed.wait(quiet_s):
                pass  # another one came: wait for quiet again
            return list(self._received)

    def drain(self, destination: str, idle_s: float = 1.5) -> list[Received]:
        """Every message on ``destination`` now (consumed), waiting ``idle_s`` for stragglers.

        A message the broker dispatched just before it saw the UNSUBSCRIBE arrives after this
        returns; it is kept for the next drain of its destination, not dropped (ack=auto: the
        broker counts it as consumed).
        """
        sub = f"drain-{time.monotonic_ns()}"
        with self._changed:
            self.conn.subscribe(destination, id=sub, ack="auto")
            while self._changed.wait(idle_s):
                pass  # one came: wait for stragglers
        self.conn.unsubscribe(sub)
        with self._changed:
            taken = [r for r in self._received if r.headers.get("destination") == destination]
            self._received = [
                r for r in self._received if r.headers.get("destination") != destination
            ]
        return taken

    def close(self) -> None:
        """Disconnect once the broker has processed every frame sent before (a receipt; a
        consumer started next could otherwise race the broker still storing these). A broker
        that is gone already leaves nothing to clean up."""
        with contextlib.suppress(Exception):
            if self.conn.is_connected():
                self.conn.disconnect(receipt=f"bye-{time.monotonic_ns()}")
