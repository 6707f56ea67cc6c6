"""syncd against a broker as production runs it (activemq-production.xml): STOMP over TLS only,
client certificates required, no anonymous logins, rights per queue.

Every command is run as users run it (``syncd ...`` with a config.yaml); the publisher is the
limited user ``crm``, which may write its own queue ``syncd.crm`` and nothing else.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stomp

from syncd.broker import Outgoing
from syncd.broker.stomp import StompBroker
from syncd.config import load_config
from tests.harness import Daemon, syncd
from tests.history import MAPPING, TABLE, Source, random_history
from tests.secure_broker import PASSWORDS, SecureBroker
from tests.services import PostgresCluster, wait_until

_runs = itertools.count(1)
QUEUE = "/queue/syncd.crm"  # the only queue user crm may write
FAST_RETRY = "retry: {initial_backoff_ms: 100, max_backoff_ms: 800}\n"


def write_config(directory: Path, broker_section: str, database_url: str = "") -> Path:
    """A config.yaml with ``broker_section`` and the customers mapping of source crm."""
    (directory / "mappings").mkdir(parents=True, exist_ok=True)
    (directory / "mappings" / "customers.yaml").write_text(MAPPING.replace("SYSTEM", "crm"))
    url = database_url or f"sqlite:///{directory / 'unused.db'}"
    config = directory / f"config-{next(_runs)}.yaml"
    config.write_text(
        broker_section + f'databases:\n  warehouse: {{url: "{url}"}}\nmappings: mappings/\n'
    )
    return config


def assert_no_traceback_nor_secret(output: str) -> None:
    assert "Traceback" not in output, output
    for secret in PASSWORDS.values():
        assert secret not in output


@dataclass
class Target:
    engine: sa.Engine

    def rows(self) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM dim_customer ORDER BY 1")]


@pytest.fixture
def target(postgres: PostgresCluster) -> Iterator[tuple[str, Target]]:
    url = postgres.create_database(f"tls_{next(_runs)}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(TABLE)
    yield url, Target(engine)
    engine.dispose()


def tls_publisher(secure: SecureBroker, user: str) -> Any:
    """What any outside publisher does: a plain stomp.py client over TLS, with a login."""
    conn = stomp.Connection12([("localhost", secure.port)], auto_decode=False)
    client = secure.clients[user]
    conn.set_ssl(
        for_hosts=[("localhost", secure.port)],
        ca_certs=str(secure.ca),
        cert_file=str(client.cert),
        key_file=str(client.key),
        ssl_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    conn.connect(user, PASSWORDS[user], wait=True)
    return conn


def send_confirmed(conn: Any, destination: str, bodies: list[bytes]) -> None:
    done = threading.Event()

    class Receipt(stomp.ConnectionListener):  # type: ignore[misc]
        def on_receipt(self, frame: Any) -> None:
            done.set()

    conn.set_listener("receipt", Receipt())
    conn.begin("t1")
    for body in bodies:
        conn.send(destination, body, headers={"persistent": "true", "transaction": "t1"})
    conn.commit("t1", headers={"receipt": "commit-t1"})
    assert done.wait(30), "the broker did not confirm the sends"


def dead_letters(config: Path) -> list[dict[str, Any]]:
    result = syncd("dlq", "list", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    letters: list[dict[str, Any]] = json.loads(result.stdout)
    return letters


# ------------------------------------------------------------------------------ end to end


def test_history_published_by_a_limited_user_is_applied_by_syncd_over_tls_exactly(
    secure_broker: SecureBroker, target: tuple[str, Target], tmp_path: Path
) -> None:
    url, table = target
    daemon_config = write_config(
        tmp_path, secure_broker.broker_yaml("syncd", extra=FAST_RETRY), url
    )
    crm_config = write_config(tmp_path, secure_broker.broker_yaml("crm"))
    source = Source("crm")
    random_history(source, keys=60, operations=600, seed=10)
    events = tmp_path / "events.jsonl"
    # Bad events a publisher may send: no mapping for the table; a row the target refuses.
    no_mapping = dict(source.events[0], source={**source.events[0]["source"], "table": "nope"})
    refused = {
        "op": "c",
        "after": {"id": 999_999, "name": "negative", "email": "n@x", "score": -1},
        "source": {"name": "crm", "schema": "public", "table": "customers", "seq": 1},
    }
    lines = [json.dumps(e) for e in [*source.events, no_mapping, refused]]
    events.write_text("\n".join(lines) + "\n")

    published = syncd("publish", "-c", str(crm_config), str(events))
    assert published.returncode == 0, published.stderr
    assert f"published {len(lines)} events" in published.stderr
    # Any STOMP client may publish too: here a body that is not JSON at all.
    conn = tls_publisher(secure_broker, "crm")
    try:
        send_confirmed(conn, QUEUE, [b"this is { not json"])
    finally:
        conn.disconnect()

    daemon = Daemon(daemon_config).start()
    try:
        wait_until(lambda: table.rows() == source.expected(), 120, "the target to be exact")
        wait_until(lambda: len(dead_letters(daemon_config)) >= 3, 30, "three dead letters")
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert table.rows() == source.expected()
    letters = dead_letters(daemon_config)
    assert sorted(letter["error_class"] for letter in letters) == [
        "decode",
        "no-mapping",
        "rejected",
    ], letters
    assert {letter["body"] for letter in letters} >= {"this is { not json"}
    assert f"connected to broker {secure_broker.address}" in daemon.log()
    # Drained: nothing left to dead-letter for the next test on this broker.
    purged = syncd("dlq", "purge", "--all", "--yes", "-c", str(daemon_config))
    assert purged.returncode == 0, purged.stderr


def test_status_and_dlq_list_work_over_tls(secure_broker: SecureBroker, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        secure_broker.broker_yaml(
            "syncd", extra="  dead_letter_queue: /queue/syncd.DLQ.status-test\n"
        ),
    )
    listed = syncd("dlq", "list", "-c", str(config))
    status = syncd("status", "--json", "-c", str(config))

    assert listed.returncode == 0, listed.stderr
    assert "no dead letters on /queue/syncd.DLQ.status-test" in listed.stdout
    # The statistics plugin answers over TLS on a temporary queue (a right of user syncd).
    # (The exit code is the target's: this config's SQLite file has no table to read.)
    broker = json.loads(status.stdout)["broker"]
    assert broker["reachable"] and broker["error"] is None, broker
    assert {q["queue"]: q["exists"] for q in broker["queues"]}[QUEUE], broker


# --------------------------------------------------------------------------------- refusals


def test_wrong_password_is_said_as_a_refused_login_and_a_command_exits_3(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-Secret-0000\n")
    config = write_config(tmp_path, secure_broker.broker_yaml("crm", password_file=wrong))
    events = tmp_path / "one.jsonl"
    events.write_text(json.dumps(Source("crm").create(1)) + "\n")

    for command in (["publish", str(events)], ["dlq", "list"], ["status"]):
        result = syncd(*command, "-c", str(config))
        output = result.stdout + result.stderr
        assert result.returncode == 3, (command, output)
        assert (
            f"the broker at {secure_broker.address} refused the login for user crm: "
            "User name [crm] or password is invalid"
        ) in output, (command, output)
        assert "not-the-Secret-0000" not in output
        assert_no_traceback_nor_secret(output)


def test_daemon_with_a_wrong_password_backs_off_and_says_it_once(
    secure_broker: SecureBroker, target: tuple[str, Target], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-Secret-0000\n")
    broker = secure_broker.broker_yaml("syncd", password_file=wrong)
    config = write_config(tmp_path, broker + FAST_RETRY + "logging: {level: debug}\n", target[0])
    daemon = Daemon(config).start()
    try:
        wait_until(lambda: len(_attempt_waits(daemon.log())) >= 6, 30, "six refused attempts")
        assert daemon.running, daemon.log()
    finally:
        daemon.stop()
    log = daemon.log()
    refusal = f"the broker at {secure_broker.address} refused the login for user syncd"
    said = [line for line in log.splitlines() if refusal in line and "level=error" in line]
    assert len(said) == 1, log  # once, not at every attempt
    waits = _attempt_waits(log)
    # Backoff: 0.1 s, 0.2 s, 0.4 s, then the 0.8 s cap, each plus up to 0.1 s of jitter.
    assert waits[0] < 0.25 and waits[1] >= 0.2 and all(w >= 0.8 for w in waits[3:6]), waits
    assert all(w <= 0.9 for w in waits), waits
    assert "not-the-Secret-0000" not in log
    assert "Traceback" not in log


def _attempt_waits(log: str) -> list[float]:
    """The wait before each next attempt, as the daemon logged it (at any level)."""
    return [float(s) for s in re.findall(r"broker unavailable.*?retrying in ([\d.]+) s", log)]


def test_broker_certificate_from_an_unknown_ca_is_refused_naming_host_and_reason(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, secure_broker.broker_yaml("syncd", ca=secure_broker.stranger_ca)
    )

    result = syncd("dlq", "list", "-c", str(config))

    assert result.returncode == 3, result.stderr
    # The broker sends its CA along with its certificate: OpenSSL meets a CA it does not know.
    assert (
        f"TLS with the broker at {secure_broker.address} failed: certificate verify failed: "
        "self-signed certificate in certificate chain (the broker's certificate is not signed "
        "by a CA syncd trusts: broker.tls.ca_file"
    ) in result.stderr, result.stderr
    assert_no_traceback_nor_secret(result.stdout + result.stderr)


def test_a_host_name_the_certificate_does_not_carry_is_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    # The same broker, reached by its address: its certificate names only localhost.
    config = write_config(tmp_path, secure_broker.broker_yaml("syncd", host="127.0.0.1"))

    result = syncd("status", "-c", str(config))

    assert result.returncode == 3, result.stdout + result.stderr
    assert (
        f"TLS with the broker at 127.0.0.1:{secure_broker.port} failed: certificate verify "
        "failed: IP address mismatch, certificate is not valid for '127.0.0.1'"
    ) in result.stdout
    assert_no_traceback_nor_secret(result.stdout + result.stderr)


@pytest.mark.parametrize("which", ["none", "untrusted"])
def test_a_client_certificate_the_broker_does_not_trust_is_said(
    secure_broker: SecureBroker, tmp_path: Path, which: str
) -> None:
    section = secure_broker.broker_yaml("syncd")
    if which == "none":
        section = re.sub(r"    (cert|key)_file: .*\n", "", section)
    else:
        client = secure_broker.stranger_client
        section = secure_broker.broker_yaml("syncd", client=client)
    config = write_config(tmp_path, section)

    result = syncd("dlq", "list", "-c", str(config))

    assert result.returncode == 3, result.stderr
    assert f"TLS with the broker at {secure_broker.address} failed: " in result.stderr
    expected = (
        "the broker requires a client certificate"
        if which == "none"
        else "the broker did not accept syncd's client certificate"
    )
    assert expected in result.stderr
    assert_no_traceback_nor_secret(result.stdout + result.stderr)


def test_publisher_denied_on_the_dead_letter_queue_gets_the_brokers_words(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    # Source system "DLQ" travels on /queue/syncd.DLQ, which crm may not write.
    config = write_config(tmp_path, secure_broker.broker_yaml("crm"))
    events = tmp_path / "dlq.jsonl"
    events.write_text(json.dumps(Source("DLQ").create(1)) + "\n")

    result = syncd("publish", "-c", str(config), str(events))

    assert result.returncode == 3, result.stderr
    assert (
        f"the broker at {secure_broker.address} refused the send for user crm: "
        "User crm is not authorized to write to: queue://syncd.DLQ"
    ) in result.stderr, result.stderr
    assert "the broker confirmed 0 events" in result.stderr
    assert_no_traceback_nor_secret(result.stdout + result.stderr)


def test_plain_stomp_to_the_tls_port_says_to_set_broker_tls(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    section = re.sub(r"  tls:\n(    .*\n)+", "", secure_broker.broker_yaml("syncd"))
    config = write_config(tmp_path, section + "  connect_timeout_s: 5\n")

    result = syncd("dlq", "list", "-c", str(config))

    assert result.returncode == 3, result.stderr
    assert "if that port speaks TLS, set broker.tls" in result.stderr


def test_an_idle_tls_connection_stays_up_on_heart_beats(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    # Over TLS stomp.py runs another I/O loop (non-blocking, select): heart-beats must still
    # flow both ways, or an idle daemon would be dropped and reconnect all night.
    config = load_config(write_config(tmp_path, secure_broker.broker_yaml("syncd")))
    broker = StompBroker(dataclasses.replace(config.broker, heartbeat_ms=500))
    broker.connect()
    try:
        broker.subscribe("/queue/syncd.idle-test")
        generation = broker.generation
        time.sleep(6)  # twelve heart-beat intervals with nothing else on the link
        assert broker.connected and broker.generation == generation
        body = json.dumps(Source("idle").create(1)).encode()
        broker.send_confirmed([Outgoing("/queue/syncd.idle-test", body, {})])
        assert broker.receive(10) is not None
    finally:
        broker.close()


def _capture_config(secure: SecureBroker, directory: Path, password_file: Path) -> Path:
    """A capture-only config: SQLite source crm (outbox), broker as user syncd."""
    source = directory / "source.db"
    engine = sa.create_engine(f"sqlite:///{source}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO customers VALUES (1, 'Ana')")
    engine.dispose()
    config = directory / "capture.yaml"
    config.write_text(
        secure.broker_yaml("syncd", password_file=password_file)
        + FAST_RETRY
        + f"sources:\n  crm:\n    url: sqlite:///{source}\n    capture: outbox\n"
        "    tables: [customers]\n"
    )
    return config


def test_snapshot_and_capture_with_a_wrong_password_say_so(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-Secret-0000\n")
    config = _capture_config(secure_broker, tmp_path, wrong)
    refusal = f"the broker at {secure_broker.address} refused the login for user syncd"

    snapshot = syncd("snapshot", "--source", "crm", "-c", str(config))
    assert snapshot.returncode == 3, snapshot.stderr
    assert refusal in snapshot.stderr
    assert_no_traceback_nor_secret(snapshot.stdout + snapshot.stderr)

    installed = syncd("capture", "install", "-c", str(config))
    assert installed.returncode == 0, installed.stderr
    daemon = Daemon(config, "--only", "capture").start()
    try:
        wait_until(lambda: refusal in daemon.log(), 30, "the capture to say the refusal")
        time.sleep(3)  # several more refused attempts (backoff 0.1 s .. 0.8 s)
        assert daemon.running, daemon.log()
    finally:
        daemon.stop()
    said = [line for line in daemon.log().splitlines() if refusal in line]
    assert len(said) == 1, daemon.log()
    assert "level=error" in said[0]
    assert_no_traceback_nor_secret(daemon.log())
