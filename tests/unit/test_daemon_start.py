"""Starting and stopping the daemon's parts: what cannot start, or stops, leaves nothing behind."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.daemon.endpoint import MetricsEndpoint
from syncd.daemon.supervision import supervise
from syncd.daemon.targets import build_appliers
from syncd.errors import ConfigError, TargetOutage
from syncd.mapping import load_mappings
from syncd.telemetry.metrics import Metrics, serve


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _deadline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "deadline-warehouse"]


def _config(tmp_path: Path, url: str) -> Path:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "m.yaml").write_text(
        "mappings:\n  - name: m\n    source: {system: crm, table: t}\n"
        "    target: {database: warehouse, table: t}\n    key: [id]\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(f'databases:\n  warehouse: {{url: "{url}"}}\nmappings: mappings/\n')
    return config


def _no_new_deadline_threads_within(before: set[threading.Thread], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while set(_deadline_threads()) - before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize(
    ("url", "error"),
    [
        # Nothing listens there: prepare() finds the database down (an outage, retried).
        (f"postgresql+psycopg2://syncd@127.0.0.1:{_free_port()}/w", TargetOutage),
        # No such table: the problems are reported (exit 2).
        ("sqlite:///target.db", ConfigError),
    ],
)
def test_appliers_that_fail_to_start_leave_no_thread_behind(
    tmp_path: Path, url: str, error: type[Exception]
) -> None:
    config = load_config(_config(tmp_path, url))
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    before = set(_deadline_threads())  # other tests' appliers, closing or not
    for _ in range(5):  # the daemon retries a start while the database is down
        with pytest.raises(error):
            build_appliers(config, mappings)
    assert _no_new_deadline_threads_within(before, 5), _deadline_threads()


def test_closing_the_metrics_endpoint_closes_its_socket_and_joins_its_poller() -> None:
    stopping = threading.Event()
    server = serve(f"127.0.0.1:{_free_port()}", Metrics(), lambda: (True, "ok"))
    poller = threading.Thread(target=stopping.wait)
    poller.start()
    endpoint = MetricsEndpoint(server, poller)
    stopping.set()
    endpoint.close()
    assert server.socket.fileno() == -1  # closed, not only no longer served
    assert not poller.is_alive()


class _Notifier:
    def stopping(self) -> None:
        pass


def test_when_several_parts_fail_the_daemon_dies_of_the_first_and_logs_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first_failed = threading.Event()

    def first(stopping: threading.Event) -> None:
        first_failed.set()
        raise RuntimeError("capture crm: source gone")

    def second(stopping: threading.Event) -> None:
        first_failed.wait(5)
        raise ValueError("apply loop: something else broke")

    with pytest.raises(RuntimeError, match="source gone"):
        supervise({"a": first, "b": second}, threading.Event(), _Notifier())  # type: ignore[arg-type]
    assert "something else broke" in caplog.text
