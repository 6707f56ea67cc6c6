"""The daemon's STOMP connection (``StompBroker``) against a real ActiveMQ: settling."""

from __future__ import annotations

import dataclasses
import uuid

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
