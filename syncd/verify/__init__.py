"""``syncd verify``: prove a target equals its source through the mapping — and repair it —
while capture and apply run.

- :mod:`~syncd.verify.plan` — what is compared, and each side's SQL for it;
- :mod:`~syncd.verify.sides` — the queries: chunk bounds, digests, rows;
- :mod:`~syncd.verify.compare` — digests into differences, verdicts and their report (pure);
- :mod:`~syncd.verify.settle` — waiting until the daemon has applied past the source's position;
- :mod:`~syncd.verify.repair` — corrective events, positioned for the guard;
- :mod:`~syncd.verify.run` — the walk over each mapping's table, and the command's output.
"""
