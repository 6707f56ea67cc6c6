"""`syncd dlq` as sysadmins use it, against the real broker: list, show, replay, purge — and the
whole story: an event the target rejects, the cause fixed, the event replayed and applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stomp

from tests.harness import REPO, Daemon, Received, StompClient, syncd, write_config
from tests.services import Broker, PostgresCluster, free_port, wait_until


@dataclass
class Dlq:
    """A config whose dead-letter queue and source queue are this test's alone."""

    config: Path
    queue: str  # the dead-letter queue
    source: str  # where the dead letters came from
    client: StompClient
    broker: Broker

    def run(self, *args: str, stdin: str | None = "") -> Any:
        return syncd("dlq", *args, "-c", str(self.config), stdin=stdin)

    def listed(self) -> list[dict[str, Any]]:
        result = self.run("list", "--json")
        assert result.returncode == 0, result.stderr
        letters: list[dict[str, Any]] = json.loads(result.stdout)
        return letters

    def ids(self) -> list[str]:
        return [letter["id"] for letter in self.listed()]

    def size(self) -> int:
        return int(self.broker.queue_stats(self.queue.removeprefix("/queue/"))["size"])

    def add(self, number: int, *, mapping: str = "customers", error_class: str = "rejected") -> str:
        """One dead letter as the daemon writes it; returns its body."""
        body = json.dumps({"op": "c", "after": {"id": number}, "source": {"seq": number}})
        headers = {
            "syncd-error": f"mapping {mapping!r}: dim_customer rejected key [{number}]: "
            + "new row violates check constraint " * 8,
            "syncd-error-class": error_class,
            "syncd-mapping": mapping,
            "syncd-key": f"[{number}]",
            "syncd-original-destination": self.source,
            "syncd-original-message-id": f"ID:publisher-1:1:1:1:{number}",
            "syncd-failed-at": "2026-03-01T10:00:00.123+00:00",
            "syncd-attempts": "1",
            "syncd-group": f"public.customers:[{number}]",
        }
        self.client.send(self.queue, body, **headers)
        return body


@pytest.fixture
def dlq(broker: Broker, tmp_path: Path) -> Iterator[Dlq]:
    name = uuid.uuid4().hex[:12]
    queue = f"/queue/syncd.DLQ.test-{name}"
    config = write_config(
        tmp_path, broker.port, "sqlite://", "mappings: []\n", dead_letter_queue=queue
    )
    client = StompClient(broker.port)
    yield Dlq(config, queue, f"/queue/syncd.src-{name}", client, broker)
    client.close()


def seed(dlq: Dlq, count: int, **kwargs: str) -> dict[str, str]:
    """``count`` dead letters; returns body by DLQ id, in queue order."""
    bodies = [dlq.add(number, **kwargs) for number in range(1, count + 1)]
    dlq.client.flush()
    return dict(zip(dlq.ids(), bodies, strict=True))


def receive(broker: Broker, destination: str, selector: str, idle_s: float = 1.5) -> list[Received]:
    """Consume what matches ``selector`` on ``destination``."""
    received: list[Received] = []
    arrived = threading.Event()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            received.append(Received(dict(frame.headers), frame.body))
            arrived.set()

    conn = stomp.Connection12([("127.0.0.1", broker.port)], auto_decode=False)
    conn.set_listener("receive", Listener())
    conn.connect(wait=True)
    try:
        conn.subscribe(destination, id="receive", ack="auto", headers={"selector": selector})
        while arrived.wait(idle_s):
            arrived.clear()
    finally:
        conn.disconnect()
    return received


# -- list and show -------------------------------------------------------------------------


def test_list_shows_exactly_the_dead_letters_and_takes_none_of_them(dlq: Dlq) -> None:
    seed(dlq, 3)
    first = dlq.run("list")
    assert first.returncode == 0, first.stderr
    again = dlq.run("list")
    assert again.stdout == first.stdout
    lines = first.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "FAILED"]
    assert len(lines) == 5 and lines[-1] == f"3 dead letters on {dlq.queue}"
    assert all(len(line) <= 160 for line in lines)
    assert "rejected" in lines[1] and "customers" in lines[1] and "[1]" in lines[1]
    assert lines[1].endswith("…")  # the long error is cut to fit
    assert dlq.size() == 3


def test_list_json_has_every_error_in_full(dlq: Dlq) -> None:
    seed(dlq, 2)
    [one, two] = dlq.listed()
    assert one["error"].count("violates check constraint") == 8  # the table cuts it
    assert one["headers"]["syncd-group"] == "public.customers:[1]"
    assert json.loads(two["body"])["after"] == {"id": 2}


def test_list_filters_by_mapping_and_error_class(dlq: Dlq) -> None:
    dlq.add(1, mapping="customers")
    dlq.add(2, mapping="orders", error_class="decode")
    dlq.add(3, mapping="orders")
    dlq.client.flush()
    result = dlq.run("list", "--mapping", "orders", "--error-class", "rejected")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"1 of 3 dead letters on {dlq.queue} match --mapping orders --error-class rejected"
    )
    assert "[3]" in result.stdout.splitlines()[1]
    none = dlq.run("list", "--mapping", "nothing")
    assert none.stdout.strip() == f"no dead letters on {dlq.queue} match --mapping nothing"


def test_an_empty_dead_letter_queue_says_so(dlq: Dlq) -> None:
    result = dlq.run("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"no dead letters on {dlq.queue}"


def test_show_finds_a_letter_by_the_end_of_its_id(dlq: Dlq) -> None:
    letters = seed(dlq, 2)
    wanted = list(letters)[1]
    result = dlq.run("show", wanted[-8:])
    assert result.returncode == 0, result.stderr
    headers, body = result.stdout.split("\n\n", 1)
    assert headers.splitlines()[0].startswith("syncd-error ")
    assert f"message-id                  {wanted}" in headers
    assert json.loads(body) == json.loads(letters[wanted])
    assert body.startswith("{\n  ")  # pretty-printed
    assert dlq.size() == 2


def test_show_of_an_unknown_or_ambiguous_id_exits_2(dlq: Dlq) -> None:
    ids = list(seed(dlq, 11))
    unknown = dlq.run("show", "no-such-id")
    assert unknown.returncode == 2
    assert f"no dead letter no-such-id on {dlq.queue}" in unknown.stderr
    # Of 11 ids that end in consecutive numbers, two end in the same digit.
    digit = next(i[-1] for i in ids if sum(other.endswith(i[-1]) for other in ids) > 1)
    ambiguous = dlq.run("show", digit)
    assert ambiguous.returncode == 2
    assert "ambiguous" in ambiguous.stderr


# -- replay --------------------------------------------------------------------------------


def test_replay_by_id_moves_exactly_that_letter_with_its_group_and_body(dlq: Dlq) -> None:
    letters = seed(dlq, 3)
    first, chosen, last = letters
    result = dlq.run("replay", chosen[-10:])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"replayed 1 dead letter from {dlq.queue}: 1 to {dlq.source}")
    assert dlq.ids() == [first, last]
    [replayed] = receive(dlq.broker, dlq.source, "JMSXGroupID = 'public.customers:[2]'")
    assert replayed.body.decode() == letters[chosen]
    assert replayed.headers["syncd-replayed-from"] == chosen
    assert replayed.headers["syncd-group"] == "public.customers:[2]"
    assert replayed.headers["persistent"] == "true"
    assert replayed.headers["content-type"] == "application/json"
    assert not [name for name in replayed.headers if name.startswith(("syncd-error", "syncd-o"))]
    assert not {"syncd-mapping", "syncd-key", "syncd-failed-at", "syncd-attempts"} & set(
        replayed.headers
    )
    assert dlq.client.drain(dlq.source) == []  # nothing else was sent


def test_replay_by_mapping_leaves_the_other_mappings_letters(dlq: Dlq) -> None:
    dlq.add(1, mapping="customers")
    dlq.add(2, mapping="orders")
    dlq.add(3, mapping="customers")
    dlq.client.flush()
    result = dlq.run("replay", "--mapping", "customers")
    assert result.returncode == 0, result.stderr
    assert f"replayed 2 dead letters from {dlq.queue}: 2 to {dlq.source}" in result.stdout
    assert [letter["mapping"] for letter in dlq.listed()] == ["orders"]
    received = dlq.client.drain(dlq.source)
    assert sorted(json.loads(m.body)["after"]["id"] for m in received) == [1, 3]


def test_replay_all_moves_every_letter_in_several_transactions(dlq: Dlq) -> None:
    seed(dlq, 250)  # three chunks of at most 100
    result = dlq.run("replay", "--all")
    assert result.returncode == 0, result.stderr
    assert f"replayed 250 dead letters from {dlq.queue}" in result.stdout
    assert dlq.size() == 0
    assert len(dlq.client.drain(dlq.source)) == 250


def test_more_letters_than_a_browser_sees_take_a_second_run(dlq: Dlq) -> None:
    for number in range(1, 451):
        dlq.add(number)
    dlq.client.flush()
    listed = dlq.run("list")
    assert "400 dead letters on" in listed.stdout
    assert "there may be more" in listed.stderr
    assert "replayed 400 dead letters" in dlq.run("replay", "--all").stdout
    assert "replayed 50 dead letters" in dlq.run("replay", "--all").stdout
    assert dlq.size() == 0
    assert len(dlq.client.drain(dlq.source)) == 450


def test_replay_needs_a_choice_of_letters(dlq: Dlq) -> None:
    seed(dlq, 1)
    result = dlq.run("replay")
    assert result.returncode == 2
    assert "choose the dead letters" in result.stderr
    assert dlq.run("replay", "--all", "--mapping", "x").returncode == 2
    assert dlq.size() == 1


# -- purge ---------------------------------------------------------------------------------


def test_purge_with_yes_deletes_only_the_chosen_letters(dlq: Dlq) -> None:
    dlq.add(1, error_class="decode")
    dlq.add(2)
    dlq.add(3, error_class="decode")
    dlq.client.flush()
    result = dlq.run("purge", "--error-class", "decode", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"purged 2 dead letters from {dlq.queue}"
    assert [letter["key"] for letter in dlq.listed()] == ["[2]"]
    assert dlq.client.drain(dlq.source) == []


def test_purge_without_a_terminal_and_without_yes_refuses(dlq: Dlq) -> None:
    seed(dlq, 2)
    result = dlq.run("purge", "--all", stdin="yes\n")  # a pipe is not a terminal
    assert result.returncode == 2
    assert "needs confirmation" in result.stderr and "--yes" in result.stderr
    assert dlq.size() == 2


def purge_on_a_terminal(dlq: Dlq, answer: str) -> subprocess.CompletedProcess[str]:
    """`syncd dlq purge --all` with a terminal as standard input, answering ``answer``."""
    controller, terminal = os.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        return subprocess.run(
            [sys.executable, "-m", "syncd", "dlq", "purge", "--all", "-c", str(dlq.config)],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(terminal)
        os.close(controller)


def test_purge_on_a_terminal_asks_and_purges_only_after_yes(dlq: Dlq) -> None:
    seed(dlq, 2)
    declined = purge_on_a_terminal(dlq, "no")
    assert declined.returncode == 0, declined.stderr
    assert f"Purge 2 dead letters from {dlq.queue}? Type 'yes': " in declined.stderr
    assert declined.stdout.strip() == "nothing purged"
    assert dlq.size() == 2
    confirmed = purge_on_a_terminal(dlq, "yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip() == f"purged 2 dead letters from {dlq.queue}"
    assert dlq.size() == 0


def test_an_unreachable_broker_exits_3(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        free_port(),
        "sqlite://",
        "mappings: []\n",
        dead_letter_queue="/queue/x",
        extra="",
    )
    result = syncd("dlq", "list", "-c", str(config))
    assert result.returncode == 3
    assert "no broker answered" in result.stderr


# -- the whole story -----------------------------------------------------------------------

MAPPING = """
mappings:
  - name: customers
    source: {system: SYSTEM, table: public.customers}
    target: {database: warehouse, table: dim_customer}
    key: [id]
    columns: {id: customer_id, name: full_name, score: score}
"""


def test_a_rejected_event_is_replayed_and_applied_once_the_cause_is_fixed(
    broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> None:
    name = uuid.uuid4().hex[:10]
    system, queue = f"crm{name}", f"/queue/syncd.DLQ.story-{name}"
    url = postgres.create_database(f"dlq_{name}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE dim_customer (customer_id INTEGER PRIMARY KEY, full_name TEXT, "
            "score INTEGER, CONSTRAINT score_not_negative CHECK (score >= 0))"
        )
    config = write_config(
        tmp_path, broker.port, url, MAPPING.replace("SYSTEM", system), dead_letter_queue=queue
    )

    def rows() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM dim_customer ORDER BY 1")]

    def dead_letters() -> list[dict[str, Any]]:
        result = syncd("dlq", "list", "--json", "-c", str(config))
        assert result.returncode == 0, result.stderr
        letters: list[dict[str, Any]] = json.loads(result.stdout)
        return letters

    events = [
        {"op": "c", "after": {"id": n, "name": f"N{n}", "score": score}}
        | {"source": {"name": system, "schema": "public", "table": "customers", "seq": n}}
        for n, score in ((1, 5), (2, -3), (3, 7))
    ]
    published = syncd(
        "publish", "-c", str(config), "-", stdin="".join(json.dumps(e) + "\n" for e in events)
    )
    assert published.returncode == 0, published.stderr
    daemon = Daemon(config).start()
    try:
        wait_until(lambda: len(rows()) == 2 and len(dead_letters()) == 1, 60, "2 rows, 1 letter")
        [letter] = dead_letters()
        assert letter["error_class"] == "rejected" and letter["key"] == "[2]"
        assert letter["headers"]["syncd-group"] == "public.customers:[2]"
        with engine.begin() as conn:  # the fix: negative scores are allowed after all
            conn.exec_driver_sql("ALTER TABLE dim_customer DROP CONSTRAINT score_not_negative")
        replay = syncd("dlq", "replay", "--all", "-c", str(config))
        assert replay.returncode == 0, replay.stderr
        assert f"replayed 1 dead letter from {queue}: 1 to /queue/syncd.{system}" in (replay.stdout)
        wait_until(lambda: len(rows()) == 3, 60, "the replayed event to be applied")
        assert rows() == [(1, "N1", 5), (2, "N2", -3), (3, "N3", 7)]
        listed = syncd("dlq", "list", "-c", str(config))
        assert listed.stdout.strip() == f"no dead letters on {queue}"
        assert daemon.running, daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()
        engine.dispose()
