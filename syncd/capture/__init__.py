"""Capturing changes at the source database and putting them on the broker.

Two modes, one contract:

- ``logical`` (``syncd.capture.logical``): PostgreSQL logical decoding with the built-in
  ``pgoutput`` plugin over a replication connection; the position of a change is the LSN of
  its WAL record (``source.lsn``).
- ``outbox`` (``syncd.capture.outbox``): triggers write each row change into an outbox table
  in the changing transaction; a relay publishes the outbox in id order. The position is the
  outbox id (``source.seq``).

Both hand the runner (``syncd.capture.runner``) :class:`CapturedBatch` es: whole source
transactions, in commit order. The runner publishes a batch's events in STOMP transactions
committed with a receipt and only then calls :meth:`Capture.confirm`, so a crash between the
two re-sends rather than loses (the consumer's position guard makes a re-send harmless).

Snapshots (``syncd.capture.snapshot``) publish ``r`` events at position 0, below every
captured change: a snapshot row never overwrites a change that the stream carries, however
the two interleave, so a snapshot can run, stop and resume while writes and capture go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Snapshot reads sit below every captured change (LSNs and outbox ids start above 0).
SNAPSHOT_POSITION = 0


@dataclass(frozen=True, slots=True)
class Captured:
    """One captured row change, ready to publish.

    ``event`` is the Debezium-shaped change event of the wire contract: ``op``, ``before``,
    ``after``, ``source`` ({name, schema, table, lsn | seq, txId, ts_ms}) and ``ts_ms``.
    ``group`` is its ``JMSXGroupID``: ``schema.table:`` + ``key_text`` of the key values.
    """

    event: dict[str, Any]
    group: str


@dataclass(slots=True)
class CapturedBatch:
    """Whole source transactions, in commit order; ``token`` is what ``confirm`` needs."""

    events: list[Captured] = field(default_factory=list)
    token: Any = None


class Capture(Protocol):
    """A source of captured changes (one per configured source)."""

    def poll(self, timeout_s: float) -> CapturedBatch | None:
        """The next batch of whole transactions, or None when nothing arrived in time.

        Raises ``SourceUnavailable`` when the source database cannot be reached.
        """

    def confirm(self, batch: CapturedBatch) -> None:
        """The broker holds every event of ``batch``: let the source forget them."""

    def close(self) -> None: ...


def primary_key(conn: Any, schema: str, table: str, needed_for: str) -> tuple[str, ...]:
    """A source table's primary-key columns; ``CaptureError`` if it is missing or has none.

    ``needed_for`` ends the no-key message with why this capture needs one.
    """
    import sqlalchemy as sa

    from syncd.errors import CaptureError

    inspector = sa.inspect(conn)
    if not inspector.has_table(table, schema=schema):
        raise CaptureError(
            f"table {schema}.{table} does not exist in the source database: check the "
            "source's tables in config.yaml"
        )
    key = tuple(inspector.get_pk_constraint(table, schema=schema)["constrained_columns"])
    if not key:
        raise CaptureError(f"table {schema}.{table} has no primary key{needed_for}")
    return key


def group_for(schema: str, table: str, key_values: Sequence[Any]) -> str:
    """The JMSXGroupID of a captured change: table + key, as ``Publisher.group_of`` makes it."""
    from syncd.change import key_text

    return f"{schema}.{table}:{key_text(key_values)}"
