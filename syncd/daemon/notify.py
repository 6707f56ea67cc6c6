"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING over ``$NOTIFY_SOCKET``.

The protocol is a datagram of ``KEY=VALUE`` lines sent to a Unix socket whose path systemd puts
in ``$NOTIFY_SOCKET`` (a leading ``@`` names an abstract socket) — a few lines, no libsystemd.
Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_interval_s = _watchdog_interval_s(env)
        self._last_ping = 0.0
        self._status = ""

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *assignments: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:  # systemd went away or the socket is full: never fatal
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        """Tell systemd a human-readable status line (shown by `systemctl status`)."""
        if text != self._status:
            self._status = text
            self.send(f"STATUS={text}")

    def alive(self) -> None:
        """Called by the loop that does the work, only while it makes progress: feeds the
        watchdog at half its interval, so a wedged daemon stops feeding it and is restarted."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def waiting(self, status: str) -> None:
        """Waiting out an outage: alive (not wedged), and saying what for."""
        self.alive()
        self.status(status)

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: finishing the batch in hand")


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC``, if the watchdog is meant for this process."""
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000
