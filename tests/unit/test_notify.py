import os
import socket
from pathlib import Path

from syncd.daemon.notify import Notifier


def test_without_notify_socket_every_call_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.alive()
    notifier.stopping()


def test_messages_reach_the_socket_and_the_watchdog_is_fed_at_half_its_interval(
    tmp_path: Path,
) -> None:
    path = tmp_path / "n.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(1)
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval_s == 2.0
    notifier.ready("applying: 1 mappings")
    assert receiver.recv(100) == b"READY=1\nSTATUS=applying: 1 mappings"
    notifier.alive()
    notifier.alive()  # within the interval: not sent again
    notifier.status("same")
    notifier.status("same")  # unchanged status: not sent again
    notifier.stopping()
    assert receiver.recv(100) == b"WATCHDOG=1"
    assert receiver.recv(100) == b"STATUS=same"
    assert receiver.recv(100).startswith(b"STOPPING=1\n")
    receiver.close()


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    other = str(os.getpid() + 1)
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": other}).watchdog_interval_s is None
