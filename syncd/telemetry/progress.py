"""Where a long-running part reports that it is alive and what it is doing.

The apply loop and each capture runner report here; the daemon answers with systemd's notify
socket (``syncd.daemon.supervision.Supervision``) and the /healthz endpoint.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """A part's progress, as the daemon's supervision hears it."""

    def ready(self, status: str) -> None:
        """Connected and working: the part is up (systemd's READY once every part is)."""
        ...

    def status(self, text: str) -> None:
        """What the part is doing now (systemd's STATUS line)."""
        ...

    def alive(self) -> None:
        """Still making progress (feeds the watchdog)."""
        ...

    def waiting(self, status: str) -> None:
        """Waiting out an outage: not wedged, and ``status`` says what for."""
        ...
