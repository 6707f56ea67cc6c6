"""Supervising the daemon's parts: their progress to systemd and /healthz, their threads.

Each part (the apply loop, each source's capture) runs on a thread of its own and reports
through its own ``Progress``; one part failing stops them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd.daemon.notify import Notifier

log = logging.getLogger("syncd")

APPLY = "the apply loop"  # the apply part's name; each source's capture is "capture NAME"


class Supervision:
    """Where the parts report progress: systemd's notify socket, and the /healthz answer.

    Each part — the apply loop, each source's capture — reports through its own view
    (:meth:`part`, a ``Progress``). READY=1 goes out once every part is ready; STATUS joins
    the parts' lines; the watchdog is fed only while every part goes round, so one wedged part
    starves it and systemd restarts the daemon.
    """

    def __init__(
        self,
        notifier: Notifier,
        parts: Sequence[str],
        stale_after_s: float,
        broker_connected: Callable[[], bool] | None = None,
    ):
        self.notifier = notifier
        self._broker_connected = broker_connected  # the apply loop's connection, if it runs
        self._stale_after_s = stale_after_s
        # A part is fresh for the watchdog if it went round within one WatchdogSec (pings go
        # out at half of it): a part wedged longer stops the pings.
        interval_s = notifier.watchdog_interval_s
        self._fresh_s = 2 * interval_s if interval_s is not None else stale_after_s
        now = time.monotonic()
        self._parts = {name: _PartState(last_progress=now) for name in parts}
        self._lock = threading.Lock()
        self._ready_sent = False

    def part(self, name: str) -> _PartProgress:
        return _PartProgress(self, name)

    def ready(self, name: str, status: str) -> None:
        with self._lock:
            self._parts[name].ready = True
            self._parts[name].status = status
            if self._ready_sent or not all(p.ready for p in self._parts.values()):
                return
            self._ready_sent = True
            self.notifier.ready(self._status_line())

    def status(self, name: str, text: str) -> None:
        with self._lock:
            self._parts[name].status = text
            self.notifier.status(self._status_line())

    def alive(self, name: str) -> None:
        with self._lock:
            part = self._parts[name]
            part.last_progress = time.monotonic()
            part.waiting_for = ""
            self._feed_watchdog()

    def waiting(self, name: str, status: str) -> None:
        """Waiting out an outage: alive (not wedged), and saying what for."""
        with self._lock:
            part = self._parts[name]
            part.last_progress = time.monotonic()
            part.waiting_for = part.status = status
            self.notifier.status(self._status_line())
            self._feed_watchdog()

    def health(self) -> tuple[bool, str]:
        """Healthy: connected to the broker, and every part went round recently."""
        if self._broker_connected is not None and not self._broker_connected():
            return False, "not connected to the broker"
        now = time.monotonic()
        with self._lock:
            for name, part in self._parts.items():
                if part.waiting_for:
                    return False, part.waiting_for
                silent_s = now - part.last_progress
                if silent_s > self._stale_after_s:
                    return False, f"{name} has not gone round for {silent_s:.0f} s"
        return True, "applying" if APPLY in self._parts else "capturing"

    def _feed_watchdog(self) -> None:
        now = time.monotonic()
        if all(now - p.last_progress <= self._fresh_s for p in self._parts.values()):
            self.notifier.alive()

    def _status_line(self) -> str:
        return "; ".join(p.status for p in self._parts.values() if p.status)


@dataclass
class _PartState:
    last_progress: float
    ready: bool = False
    status: str = ""
    waiting_for: str = ""


class _PartProgress:
    """One part's ``Progress``: what the apply loop and each capture runner report to."""

    def __init__(self, supervision: Supervision, name: str):
        self._supervision = supervision
        self._name = name

    def ready(self, status: str) -> None:
        self._supervision.ready(self._name, status)

    def status(self, text: str) -> None:
        self._supervision.status(self._name, text)

    def alive(self) -> None:
        self._supervision.alive(self._name)

    def waiting(self, status: str) -> None:
        self._supervision.waiting(self._name, status)


def supervise(
    workers: dict[str, Callable[[threading.Event], None]],
    stopping: threading.Event,
    notifier: Notifier,
    between: Callable[[], None] | None = None,
) -> None:
    """Run each part in its own thread; this (main) thread stays free for signals.

    A thread blocked in a database driver's C code cannot run Python signal handlers, so no
    part may run on the main thread: here a second SIGTERM exits at once even while a statement
    hangs, and systemd hears STOPPING=1 as soon as the first one arrives. A part that fails (or
    ends unasked) stops the others, each finishing its round, and the daemon then dies of that
    failure: a non-zero exit, so systemd restarts it (except for exit code 2).
    """
    failures: list[BaseException] = []

    def work(name: str, part: Callable[[threading.Event], None]) -> None:
        try:
            part(stopping)
            if not stopping.is_set():
                raise RuntimeError(f"{name} ended without being asked to")
        except BaseException as exc:  # handed to the main thread, which dies of it
            failures.append(exc)
            stopping.set()

    threads = [
        threading.Thread(target=work, args=(name, part), name=name)
        for name, part in workers.items()
    ]
    for thread in threads:
        thread.start()
    told = False
    while running := [thread for thread in threads if thread.is_alive()]:
        running[0].join(0.2)
        if between is not None:
            between()
        if stopping.is_set() and not told:
            told = True
            if failures:
                log.error("a part failed (%s): stopping the others", failures[0])
            else:
                log.info("stop requested: finishing the batch in hand")
            notifier.stopping()
    for also in failures[1:]:  # the daemon dies of the first; the others are said here
        log.error("another part failed too: %s", also, exc_info=also)
    if failures:
        raise failures[0]
    if not told:
        notifier.stopping()
