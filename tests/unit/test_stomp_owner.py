"""One owner per connection: the commands of every thread run on one thread, in order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from syncd.broker import Outgoing
from syncd.broker.stomp import StompBroker, _Inbox, _Listener, _Owner
from syncd.config import DEFAULTS, BrokerConfig
from syncd.errors import BrokerRefused


def test_commands_from_many_threads_all_run_on_the_owner_thread_one_at_a_time() -> None:
    owner = _Owner("stomp-test")
    ran_on: list[str] = []
    running = 0
    overlapped = False

    def command(n: int) -> int:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        ran_on.append(threading.current_thread().name)
        running -= 1
        return n * 2

    try:
        with ThreadPoolExecutor(8) as callers:
            results = list(callers.map(lambda n: owner.run(lambda: command(n)), range(400)))
    finally:
        owner.stop()
    assert results == [n * 2 for n in range(400)]  # each caller gets its own command's result
    assert set(ran_on) == {"stomp-test"} and len(ran_on) == 400
    assert not overlapped


def test_a_command_s_exception_is_raised_in_the_caller_and_the_owner_carries_on() -> None:
    owner = _Owner("stomp-test")

    def fails() -> None:
        raise ConnectionResetError("gone")

    try:
        with pytest.raises(ConnectionResetError, match="gone"):
            owner.run(fails)
        assert owner.run(lambda: "still here") == "still here"
    finally:
        owner.stop()


def test_commands_run_in_the_order_given() -> None:
    owner = _Owner("stomp-test")
    seen: list[int] = []
    try:
        for n in range(50):
            owner.run(lambda n=n: seen.append(n))  # type: ignore[misc]
    finally:
        owner.stop()
    assert seen == list(range(50))


def test_a_stopped_owner_keeps_no_thread_and_starts_again_for_the_next_command() -> None:
    owner = _Owner("stomp-test-restart")

    def alive() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "stomp-test-restart"]

    owner.run(lambda: None)
    assert len(alive()) == 1
    owner.stop()
    assert alive() == []
    owner.stop()  # stopping twice is harmless
    assert owner.run(lambda: threading.current_thread().name) == "stomp-test-restart"
    owner.stop()
    assert alive() == []


def test_a_command_given_on_the_owner_thread_runs_at_once_not_queued_behind_itself() -> None:
    owner = _Owner("stomp-test")
    try:
        # A queued inner command would wait for the outer one, which waits for it: a deadlock.
        assert owner.run(lambda: owner.run(lambda: "inner")) == "inner"
    finally:
        owner.stop()


def test_stop_lets_the_commands_given_before_it_finish() -> None:
    owner = _Owner("stomp-test")
    release = threading.Event()
    done: list[str] = []

    def slow() -> None:
        release.wait(10)
        done.append("slow")

    caller = threading.Thread(target=owner.run, args=(slow,))
    caller.start()
    stopper = threading.Thread(target=owner.stop)
    while not any(t.name == "stomp-test" for t in threading.enumerate()):
        threading.Event().wait(0.001)
    stopper.start()
    release.set()
    stopper.join(10)
    caller.join(10)
    assert done == ["slow"] and not stopper.is_alive()


def test_commands_given_while_the_owner_stops_run_on_their_own_thread_and_none_hangs() -> None:
    # A command that arrives while the thread stops goes to a fresh thread; were it taken by
    # the stopping one, a command that gives another (run on "its" thread at once) would wait
    # for itself.
    owner = _Owner("stomp-test-race")
    finished: list[int] = []

    def caller() -> None:
        for n in range(200):
            assert owner.run(lambda: owner.run(lambda: n)) == n  # noqa: B023
            finished.append(n)

    worker = threading.Thread(target=caller)
    worker.start()
    while worker.is_alive():
        owner.stop()
    worker.join(30)
    owner.stop()
    assert not worker.is_alive() and finished == list(range(200))
    assert [t for t in threading.enumerate() if t.name == "stomp-test-race"] == []


class _RefusingConnection:
    """Answers a COMMIT as ActiveMQ did for a SEND the user may not make: first the COMMIT's
    ERROR, then — a moment later, on the receiver thread — the ERROR that says why. A connection
    hung up in between never reads the second one."""

    def __init__(self, listener: Any):
        self._listener = listener
        self.hung_up = threading.Event()

    def begin(self, transaction: str) -> None:
        pass

    def send(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        pass

    def commit(self, transaction: str, headers: dict[str, str]) -> None:
        def answer() -> None:
            commit_error = SimpleNamespace(
                headers={"receipt-id": headers["receipt"], "message": "COMMIT FAILED"}, body=""
            )
            self._listener.on_error(commit_error)
            if not self.hung_up.wait(0.3):
                why = "User crm is not authorized to write to: queue://syncd.DLQ"
                self._listener.on_error(SimpleNamespace(headers={"message": why}, body=""))

        threading.Thread(target=answer, daemon=True).start()

    def disconnect(self) -> None:
        self.hung_up.set()


def test_a_refused_send_is_said_in_the_brokers_words_even_when_they_follow_the_commits() -> None:
    settings = {k: v for k, v in DEFAULTS["broker"].items() if k != "password_file"}
    settings.update(hosts=(("127.0.0.1", 61613),), tls=None, user="crm")
    broker = StompBroker(BrokerConfig(**settings))
    listener = _Listener(broker, _Inbox(), generation=0)
    broker._conn, broker._listener = _RefusingConnection(listener), listener
    broker._connected = True
    try:
        with pytest.raises(BrokerRefused, match=r"not authorized to write to: queue://syncd\.DLQ"):
            broker.send_confirmed([Outgoing("/queue/syncd.DLQ", b"{}", {})])
    finally:
        broker._conn = None
        broker.close()
