"""The Prometheus endpoint counts exactly what the daemon did; /healthz says whether it works."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from syncd.config import load_config
from syncd.daemon import main as daemon
from tests.harness import Daemon, StompClient, write_config
from tests.services import Broker, free_port, wait_until

MAPPING = """
mappings:
  - name: gauges
    source: {system: metered, table: gauges}
    target: {database: warehouse, table: gauges}
    key: [id]
"""


def event(seq: int, key: int) -> str:
    source = {"name": "metered", "table": "gauges", "seq": seq, "ts_ms": 1_700_000_000_000}
    return json.dumps({"op": "c", "after": {"id": key, "v": seq}, "source": source})


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        response = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except urllib.error.URLError:
        return {}  # not listening yet
    text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_equal_what_was_applied_and_healthz_answers(broker: Broker, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE gauges (id INTEGER PRIMARY KEY, v INTEGER)")
    port = free_port()
    config = write_config(
        tmp_path,
        broker.port,
        url,
        MAPPING,
        dead_letter_queue="/queue/metered.DLQ",
        extra=f'metrics: {{listen: "127.0.0.1:{port}"}}\n',
    )
    daemon = Daemon(config).start()
    client = StompClient(broker.port)
    try:
        for seq in range(1, 11):
            client.send("/queue/syncd.metered", event(seq, seq))
        for seq in (3, 4):  # duplicates
            client.send("/queue/syncd.metered", event(seq, seq))
        client.send("/queue/syncd.metered", "not json")
        client.flush()
        wait_until(
            lambda: (
                scrape(port).get(
                    (
                        "syncd_events_dead_lettered_total",
                        (("error_class", "decode"), ("mapping", "-")),
                    )
                )
                == 1
            ),
            30,
            "the metrics to count the dead letter",
        )
        samples = scrape(port)
        assert samples[("syncd_events_applied_total", (("mapping", "gauges"),))] == 10
        skipped = ("syncd_events_skipped_total", (("mapping", "gauges"), ("reason", "duplicate")))
        assert samples[skipped] == 2
        assert samples[("syncd_broker_connected", ())] == 1
        assert samples[("syncd_lag_seconds", (("mapping", "gauges"),))] > 0
        assert samples[("syncd_batch_seconds_count", ())] >= 1
        depth = ("syncd_queue_depth", (("queue", "/queue/syncd.metered"),))
        wait_until(lambda: depth in scrape(port), 20, "the queue depth from broker statistics")
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status == 200
    finally:
        assert daemon.stop() == 0, daemon.log()
        client.close()
        engine.dispose()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        raise AssertionError("the endpoint outlived the daemon")
    except urllib.error.URLError:
        pass


def test_a_stopped_daemon_leaves_its_metrics_port_and_poller_behind_it(
    broker: Broker, tmp_path: Path
) -> None:
    # In-process, so the threads and sockets it leaves behind can be seen.
    url = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE gauges (id INTEGER PRIMARY KEY, v INTEGER)")
    engine.dispose()
    port = free_port()
    config = load_config(
        write_config(
            tmp_path,
            broker.port,
            url,
            MAPPING,
            dead_letter_queue="/queue/metered.DLQ",
            extra=f'metrics: {{listen: "127.0.0.1:{port}"}}\n',
        )
    )
    stopping = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(config, stopping))
    runner.start()
    try:
        wait_until(lambda: bool(scrape(port)), 30, "the metrics endpoint")
    finally:
        stopping.set()
        runner.join(30)
    assert not runner.is_alive()
    assert [t.name for t in threading.enumerate() if t.name == "queue-depths"] == []
    with socket.socket() as again:  # closed, not just shut down: a restart binds it at once
        # As the metrics server binds (SO_REUSEADDR: past the scrape's TIME_WAIT, but never
        # beside a socket still listening).
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
