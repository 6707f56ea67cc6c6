"""Which daemon this is, when many run one job: ``SYNCD_INSTANCE``, or host and pid.

Several ``syncd run`` on one configuration share its queues (message groups spread the keys
over them), so logs and metrics must say which one spoke. ``syncd-worker@.service`` sets
``SYNCD_INSTANCE=%H-%i`` (host and instance name, stable across restarts); without it the
host name and process id tell daemons apart.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

INSTANCE_ENV = "SYNCD_INSTANCE"


def instance_name(environ: Mapping[str, str] | None = None) -> str:
    """``$SYNCD_INSTANCE`` if set (trimmed, non-empty), else ``<host>-<pid>``."""
    environ = os.environ if environ is None else environ
    configured = environ.get(INSTANCE_ENV, "").strip()
    if configured:
        return configured
    return f"{socket.gethostname()}-{os.getpid()}"
