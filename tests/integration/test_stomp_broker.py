"""The daemon's STOMP connection (``StompBroker``) against a real ActiveMQ: settling."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Any

from syncd.broker import Outgoing
from syncd.broker.stomp import StompBroker
from tests.services import Broker, _broker_config


def test_a_settle_whose_commit_is_not_confirmed_gives_up_the_connection(broker: Broker) -> None:
    # An unconfirmed commit (receipt timeout, an ERROR) leaves the transaction's fate unknown;
    # acknowledging more over that connection could cover messages whose dead letters never
    # landed. The connection is given up: what it did not commit is redelivered.
    queue, dlq = f"/queue/settle-{uuid.uuid4().hex[:8]}", f"/queue/dlq-{uuid.uuid4().hex[:8]}"
    config = _broker_config(broker.host, broker.port, 10)
    sender = StompBroker(config, "test-sender")
    sender.connect()
    sender.send_confirmed([Outgoing(queue, b'{"n": 1}')])
    sender.close()
    consumer = StompBroker(dataclasses.replace(config, receipt_timeout_s=0.0), "test-consumer")
    consumer.subscribe(queue)
    consumer.connect()
    try:
        message = consumer.receive(10)
        assert message is not None
        assert consumer.settle([message], [Outgoing(dlq, b"dead letter")]) is False
        assert consumer.connected is False  # ... so nothing more goes over this connection
        # Either the commit happened (dead letter and ack both) or it did not (neither): after
        # a reconnect the message is back exactly when the dead letter is not on its queue.
        consumer.connect()
        again = consumer.receive(3)
        if again is None:
            assert broker.queue_stats(dlq.removeprefix("/queue/"))["size"] == 1
        else:
            assert again.redelivered
    finally:
        consumer.close()


def test_every_frame_goes_out_from_the_connection_s_owner_thread(broker: Broker) -> None:
    # The apply loop, its decode-ahead helper, a reload and the metrics thread all use the
    # daemon's connection; only its owner thread writes to it.
    queue, dlq = f"/queue/owner-{uuid.uuid4().hex[:8]}", f"/queue/dlq-{uuid.uuid4().hex[:8]}"
    config = _broker_config(broker.host, broker.port, 10)
    consumer = StompBroker(config, "test-owner")
    writers: list[tuple[str, str]] = []
    consumer.subscribe(queue)
    consumer.connect()
    try:
        conn = consumer._conn
        for name in ("send", "ack", "begin", "commit", "subscribe", "unsubscribe"):
            real = getattr(conn, name)

            def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                writers.append((_name, threading.current_thread().name))
                return _real(*args, **kwargs)

            setattr(conn, name, spy)
        consumer.send_confirmed([Outgoing(queue, b'{"n": 1}'), Outgoing(queue, b'{"n": 2}')])
        first, second = consumer.receive(10), consumer.receive(10)
        assert first is not None and second is not None
        other = threading.Thread(target=consumer.subscribe, args=(f"{queue}-more",))
        other.start()
        other.join(10)
        assert consumer.settle([first], []) is True  # from this thread ...
        settled: list[bool] = []
        helper = threading.Thread(
            target=lambda: settled.append(consumer.settle([second], [Outgoing(dlq, b"x")]))
        )
        helper.start()  # ... and from another, with a dead letter in a transaction
        helper.join(20)
        assert settled == [True]
        consumer.unsubscribe(f"{queue}-more")
    finally:
        consumer.close()
    assert {name for name, _thread in writers} == {
        "send",
        "ack",
        "begin",
        "commit",
        "subscribe",
        "unsubscribe",
    }
    assert {thread for _name, thread in writers} == {"stomp-test-owner"}
    assert [t for t in threading.enumerate() if t.name == "stomp-test-owner"] == []
    assert broker.queue_stats(dlq.removeprefix("/queue/"))["size"] == 1
