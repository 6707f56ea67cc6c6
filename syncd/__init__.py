"""syncd: change events over ActiveMQ (STOMP), applied idempotently to target databases.

The package tree is the data path. Layers, lowest first: a module imports from its own layer
and the layers below it, never from one above; parts of one layer apart by ``|`` do not import
each other (``tests/unit/test_layers.py`` reads this table and holds every module to it,
imports inside functions included).

    foundations   errors jsonvalue          syncd's exceptions; JSON that keeps every digit
    config        config backoff            config.yaml into frozen dataclasses; the one backoff
    model         events values debezium mapping schema   an event; what a mapping makes of it
    change        change                    one event as one mapping sees it
    routing       routing groups            events to their mappings' changes; their message groups
    broker        broker                    STOMP (the only importer of stomp.py)
    apply         apply                     a batch of changes into one target database
    deadletter    deadletter                dead letters: why, their headers, reading them back
    telemetry     telemetry                 counts, metrics, /healthz, progress
    publisher     publisher                 events onto their queues (the public Publisher)
    sides         pipeline | capture        the apply loop | source changes, captured, published
    daemon        daemon                    wiring the loop and the captures; reload, signals
    commands      commands verify __main__  the ``syncd`` command line; ``syncd verify``
"""
