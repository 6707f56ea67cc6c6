"""syncd's benchmark: ``python -m bench.run`` (``make bench``).

It starts its own ActiveMQ and PostgreSQL (``tests/services.py``), measures what one broker
and one target can do — a bare stomp.py consumer as the ceiling, ``syncd run`` on single-event
and array messages, a naive one-transaction-per-message consumer, publishing, capture per
mode, end-to-end latency and the daemon's memory — prints a table, writes JSON, and stops
what it started.
It reports figures; it never passes or fails on speed.
"""
