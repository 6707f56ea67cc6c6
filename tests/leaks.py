"""Running syncd the way the leak test does: a config with distinctive secrets, and every
output grepped for them (tests/integration/test_secrets.py, test_database_tls.py).

:func:`syncd_without_leaks` runs one command, :func:`daemon_without_leaks` the daemon; each
asserts its exit code or log line, no traceback and no secret. A new failure mode to prove —
a broker that refuses the login, say — is one more call to either.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.database_tls import SECRET_MARKS, SOURCE_PASSWORD, TARGET_PASSWORD
from tests.harness import Daemon, syncd
from tests.services import free_port, wait_until

BROKER_MARK = "S3cr3t-mq-Xk7"
BROKER_PASSWORD = BROKER_MARK + "!q/r@s"  # the dev broker takes any login: it is still sent
MARKS = (*SECRET_MARKS, BROKER_MARK)
MAPPING = """
mappings:
  - name: customers
    source: {system: crm, table: public.customers}
    target: {database: warehouse, table: customers}
    key: [id]
"""
CUSTOMERS = "CREATE TABLE customers (id integer PRIMARY KEY, name text)"
# Short enough that a run of failures stays quick, long enough for a loaded CI machine.
QUICK = "connect_timeout=3"


def assert_no_secret(what: str, text: str) -> None:
    """No mark of any secret in ``text``, in any case (an upper-cased hex dump would hide it)."""
    for mark in MARKS:
        assert mark.lower() not in text.lower(), f"{what} shows a secret ({mark}…):\n{text}"


def assert_no_traceback(what: str, text: str) -> None:
    assert "Traceback" not in text, f"{what} ends in a traceback:\n{text}"


@dataclass(frozen=True)
class Setup:
    """Where a run's config points, and how its secrets are given."""

    directory: Path
    broker_port: int
    target_url: str | None
    source_url: str | None = None
    target_password: str = TARGET_PASSWORD
    source_password: str = SOURCE_PASSWORD
    secrets_in_files: bool = False
    log_format: str = "text"
    source_capture: str = "logical"
    extra: str = ""

    def write(self) -> Path:
        """config.yaml (at debug level) and the mapping; returns the config's path."""
        (self.directory / "mappings").mkdir(parents=True, exist_ok=True)
        (self.directory / "mappings" / "customers.yaml").write_text(MAPPING)
        sections = [
            "broker:",
            f'  hosts: ["127.0.0.1:{self.broker_port}"]',
            "  user: syncd",
            self._secret("broker", BROKER_PASSWORD, "  "),
            "  connect_timeout_s: 2",
            "  heartbeat_ms: 2000",
            "retry: {attempts: 2, initial_backoff_ms: 50, max_backoff_ms: 100, max_elapsed_s: 1}",
            f"logging: {{level: debug, format: {self.log_format}}}",
            "state_dir: var/",
            "mappings: mappings/",
        ]
        if self.target_url is not None:
            sections += ["databases:", "  warehouse:", f"    url: {json.dumps(self.target_url)}"]
            sections.append(self._secret("warehouse", self.target_password, "    "))
        if self.source_url is not None:
            sections += ["sources:", "  crm:", f"    url: {json.dumps(self.source_url)}"]
            sections += [f"    capture: {self.source_capture}", "    tables: [public.customers]"]
            sections.append(self._secret("crm", self.source_password, "    "))
        config = self.directory / "config.yaml"
        config.write_text("\n".join(sections) + "\n" + self.extra)
        return config

    def _secret(self, name: str, password: str, indent: str) -> str:
        if not self.secrets_in_files:
            return f"{indent}password: {json.dumps(password)}"  # JSON strings are YAML too
        file = self.directory / f"{name}-password"
        file.write_text(password + "\n")
        return f"{indent}password_file: {file.name}"  # relative: to the config's directory


def syncd_without_leaks(setup: Setup, *command: str, exit_code: int) -> str:
    """Run ``syncd COMMAND -c CONFIG``; assert its exit code, no traceback and no secret.

    Returns stdout + stderr, for the caller's assertions on what the failure says.
    """
    config = setup.write()
    result = syncd(*command, "-c", str(config), timeout_s=90)
    what = f"syncd {' '.join(command)}"
    output = result.stdout + result.stderr
    assert_no_secret(what, output)
    assert_no_traceback(what, output)
    assert result.returncode == exit_code, f"{what}: exit {result.returncode}\n{output}"
    return output


def daemon_without_leaks(
    setup: Setup,
    waits_for: str,
    *args: str,
    metrics: bool = False,
    while_running: Callable[[Daemon], None] = lambda daemon: None,
) -> str:
    """Start ``syncd run``, wait until its log says ``waits_for``, call ``while_running``,
    stop it; grep everything. With ``metrics`` the Prometheus page and /healthz are grepped too.
    """
    port = free_port()
    extra = f"metrics: {{listen: '127.0.0.1:{port}'}}\n" if metrics else ""
    config = Setup(**{**setup.__dict__, "extra": setup.extra + extra}).write()
    daemon = Daemon(config, *args).start()
    scraped = []
    try:
        wait_until(lambda: waits_for in daemon.log() or not daemon.running, 60, waits_for)
        while_running(daemon)
        if metrics:
            for page in ("metrics", "healthz"):
                scraped.append(_fetch(f"http://127.0.0.1:{port}/{page}"))
    finally:
        if daemon.running:
            daemon.stop()
    log = daemon.log()
    for text in (log, *scraped):
        assert_no_secret("syncd run", text)
    assert_no_traceback("syncd run", log)
    assert waits_for in log, log
    return log


def _fetch(url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError as error:
            # /healthz answers 503 while the daemon waits: that page is what we want.
            body = getattr(error, "read", None)
            if body is not None:
                return str(body().decode())
            if time.monotonic() > deadline:
                raise
