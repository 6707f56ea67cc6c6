"""`syncd run` driven as systemd drives it: a notify socket the test owns, a watchdog, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.harness import REPO, StompClient, write_config
from tests.services import Broker, PostgresCluster, wait_until

MAPPING = """
mappings:
  - name: items
    source: {system: notified, table: items}
    target: {database: warehouse, table: items}
    key: [id]
"""


class NotifySocket:
    """The receiving end of sd_notify, as systemd holds it: every datagram, timestamped."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, message in self.messages for line in message.splitlines()]

    def pings_since(self, moment: float) -> int:
        return sum(1 for at, message in self.messages if at >= moment and "WATCHDOG=1" in message)

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(tmp_path / "notify.sock")
    yield receiver
    receiver.close()


def start(config: Path, notify: NotifySocket) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "1000000",  # systemd's WatchdogSec=1s: a ping every 0.5 s
        "PYTHONUNBUFFERED": "1",
    }
    log = (config.parent / "syncd.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", "run", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )


def event(seq: int, key: int) -> str:
    after = {"id": key, "v": f"v{seq}"}
    return json.dumps(
        {"op": "u", "after": after, "source": {"name": "notified", "table": "items", "seq": seq}}
    )


def test_ready_status_watchdog_and_stopping_reach_systemd(
    broker: Broker, postgres: PostgresCluster, tmp_path: Path, notify: NotifySocket
) -> None:
    url = postgres.create_database("notified")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
    config = write_config(
        tmp_path,
        broker.port,
        url,
        MAPPING,
        dead_letter_queue="/queue/notified.DLQ",
        extra="apply: {timeout_s: 120}\n",
    )
    daemon = start(config, notify)
    client = StompClient(broker.port)
    locker = engine.connect()
    try:
        wait_until(lambda: "READY=1" in notify.lines(), 30, "READY=1")
        ready = next(m for _, m in notify.messages if "READY=1" in m)
        assert "STATUS=applying: 1 mappings" in ready
        idle_from = time.monotonic()
        wait_until(lambda: notify.pings_since(idle_from) >= 2, 10, "the watchdog fed while idle")

        # Wedge the apply: a row lock held by another session, with a long apply deadline.
        client.send("/queue/syncd.notified", event(1, 1))
        client.flush()
        wait_until(lambda: rows(engine) == [(1, "v1")], 30, "the first event")
        locker.exec_driver_sql("BEGIN")
        locker.exec_driver_sql("SELECT * FROM items WHERE id = 1 FOR UPDATE")
        client.send("/queue/syncd.notified", event(2, 1))
        client.flush()
        wait_until(lambda: waits_for_a_lock(engine), 30, "the daemon to block on the row lock")
        # It may have pinged once more on its way into the batch; after that, none for 2 s
        # (four intervals): a window, since this asserts that something does not happen.
        time.sleep(0.6)
        wedged_at = time.monotonic()
        time.sleep(2.0)
        assert notify.pings_since(wedged_at) == 0, "a wedged apply must starve the watchdog"

        # First SIGTERM: finish the batch in hand (it is wedged, so it cannot)...
        daemon.send_signal(signal.SIGTERM)
        wait_until(lambda: "STOPPING=1" in notify.lines(), 10, "STOPPING=1")
        time.sleep(1.0)  # it keeps waiting for the batch: it must not have gone
        assert daemon.poll() is None
        # ...the second exits at once; the unacknowledged event will be redelivered.
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(5) == 128 + signal.SIGTERM
    finally:
        locker.rollback()
        locker.close()
        if daemon.poll() is None:
            daemon.kill()
    # Restarted, the redelivered event applies and a single SIGTERM stops cleanly.
    daemon = start(config, notify)
    try:
        wait_until(lambda: rows(engine) == [(1, "v2")], 30, "the redelivered event")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        client.close()
        engine.dispose()
    assert "STOPPING=1" in notify.lines()


def waits_for_a_lock(engine: sa.Engine) -> bool:
    """Whether another session of the database is waiting for a lock (the daemon's apply)."""
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).scalar()
    return bool(found)


def rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT id, v FROM items ORDER BY id")]
