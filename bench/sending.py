"""Putting messages on the broker: a raw stomp.py pre-loader, and syncd's own publishers.

The pre-loader fills a queue before a consumer starts, so that the consumer's rate is measured
on a full queue. It sends persistent messages in STOMP transactions, each committed with a
receipt (as syncd's publisher does), so that when it returns every message is on the broker.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import stomp

from bench.workload import body, group_of
from syncd.config import load_config
from syncd.mapping import load_mappings
from syncd.publisher import Publisher

REPO = Path(__file__).resolve().parent.parent
EventAt = Callable[[int, float], dict[str, Any]]  # (seq, sent_at) -> a change event
RECEIPT_TIMEOUT_S = 60
PublishItem = tuple[bytes, dict[str, str]]  # body and application headers
_PERSISTENT = {"persistent": "true", "content-type": "application/json"}


class _Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.arrived: set[str] = set()
        self.condition = threading.Condition()

    def on_receipt(self, frame: Any) -> None:
        with self.condition:
            self.arrived.add(frame.headers.get("receipt-id", ""))
            self.condition.notify_all()

    def wait(self, receipt: str, timeout_s: float) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: receipt in self.arrived, timeout_s):
                raise RuntimeError(f"the broker did not confirm {receipt} in {timeout_s} s")
            self.arrived.discard(receipt)


def preload(port: int, destination: str, items: Iterable[PublishItem], per_tx: int = 500) -> int:
    """Send every item to ``destination`` (persistent), confirmed; returns how many."""
    conn = stomp.Connection12([("127.0.0.1", port)], auto_decode=False)
    receipts = _Receipts()
    conn.set_listener("receipts", receipts)
    conn.connect(wait=True)
    sent = 0
    try:
        transaction = None
        for payload, headers in items:
            if transaction is None:
                transaction = conn.begin()
            conn.send(
                destination, payload, headers={**_PERSISTENT, **headers}, transaction=transaction
            )
            sent += 1
            if sent % per_tx == 0:
                _commit(conn, receipts, transaction)
                transaction = None
        if transaction is not None:
            _commit(conn, receipts, transaction)
    finally:
        conn.disconnect()
    return sent


def _commit(conn: Any, receipts: _Receipts, transaction: str) -> None:
    receipt = f"commit-{uuid.uuid4().hex}"
    conn.commit(transaction, headers={"receipt": receipt})
    receipts.wait(receipt, RECEIPT_TIMEOUT_S)


def single_event_items(events: Iterable[dict[str, Any]]) -> Iterable[PublishItem]:
    """One message per event, with the group headers syncd's publisher would set."""
    for event in events:
        group = group_of(event)
        yield body(event), {"JMSXGroupID": group, "syncd-group": group}


def array_items(arrays: Iterable[list[dict[str, Any]]]) -> Iterable[PublishItem]:
    """One message per array; its group is the source table (an array has no single key)."""
    for array in arrays:
        source = array[0]["source"]
        group = f"{source['schema']}.{source['table']}"
        yield body(array), {"JMSXGroupID": group, "syncd-group": group}


def publish_with_library(config_path: Path, events: list[dict[str, Any]]) -> float:
    """Publish through ``syncd.publisher.Publisher``; returns the seconds it took."""
    config = load_config(config_path)
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    with Publisher(config, mappings) as publisher:
        started = time.perf_counter()
        confirmed = publisher.publish(events)
        seconds = time.perf_counter() - started
    if confirmed != len(events):
        raise RuntimeError(f"Publisher confirmed {confirmed} of {len(events)} events")
    return seconds


def publish_with_cli(config_path: Path, jsonl: Path, expected: int) -> float:
    """``syncd publish -c CONFIG FILE``; returns its wall time, start-up included."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "syncd", "publish", "-c", str(config_path), str(jsonl)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    match = re.search(r"published (\d+) events", result.stderr)
    if result.returncode != 0 or not match or int(match.group(1)) != expected:
        raise RuntimeError(f"syncd publish failed (exit {result.returncode}):\n{result.stderr}")
    return seconds


def send_paced(
    port: int, destination: str, make_event: EventAt, count: int, rate: float
) -> tuple[dict[int, float], float]:
    """Send events 1…``count`` one message each on a fixed timetable of ``rate`` a second.

    Each is stamped (``time.time()``) just before its SEND; the broker persists it before
    dispatching it. Returns the stamps and the rate achieved. The socket gets TCP_NODELAY,
    which stomp.py never sets: without it, Nagle's algorithm holds each small SEND until the
    broker's delayed ACK (~40 ms), and that would be measured as syncd's latency.
    """
    conn = stomp.Connection12([("127.0.0.1", port)], auto_decode=False)
    receipts = _Receipts()
    conn.set_listener("receipts", receipts)
    conn.connect(wait=True)
    conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent: dict[int, float] = {}
    try:
        begin = time.perf_counter()
        for seq in range(1, count + 1):
            delay = begin + (seq - 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[seq] = time.time()
            ((payload, headers),) = single_event_items([make_event(seq, sent[seq])])
            conn.send(destination, payload, headers={**_PERSISTENT, **headers})
        seconds = time.perf_counter() - begin
        _commit(conn, receipts, conn.begin())  # an empty transaction: its receipt comes last
    finally:
        conn.disconnect()
    return sent, (count - 1) / seconds if seconds > 0 else float("nan")


def publish_one_by_one(
    config_path: Path, make_event: EventAt, seqs: range
) -> tuple[dict[int, float], list[float]]:
    """``Publisher.publish([event])`` per event, back to back: what an application that
    publishes each change as it happens waits. Returns the send stamps and each call's ms."""
    config = load_config(config_path)
    mappings = load_mappings(config.mappings_dir, list(config.databases))
    sent: dict[int, float] = {}
    confirm_ms: list[float] = []
    with Publisher(config, mappings) as publisher:
        for seq in seqs:
            sent[seq] = time.time()
            publisher.publish([make_event(seq, sent[seq])])
            confirm_ms.append((time.time() - sent[seq]) * 1000)
    return sent, confirm_ms
