"""The delivery ledger: how often processing of a redelivered message began, kept on disk.

ActiveMQ redelivers an unacknowledged message forever and tells STOMP clients only
``redelivered:true``, never how often. A message that kills the daemon (a crash, the OOM killer,
a hung interpreter the watchdog shoots) would so kill it forever. The ledger counts, durably
and *before* the work starts, every time processing of a redelivered message begins, and
forgets the message once processing ends — however it ended — so a count that survives is a
count of deaths. Past ``apply.max_deliveries`` the message is dead-lettered unprocessed.

It is a small SQLite file in ``state_dir``: local, synchronous, no server.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from syncd.errors import ConfigError, Problem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    message_id TEXT PRIMARY KEY,
    starts     INTEGER NOT NULL,   -- how often processing began (and did not end)
    first_at   REAL NOT NULL,      -- unix time of the first start recorded
    last_at    REAL NOT NULL
)
"""
_FORGET_AFTER_S = 7 * 24 * 3600  # entries of messages never seen again (purged elsewhere)


class DeliveryLedger:
    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # FULL: a count must be on disk before the work it counts starts.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            self._db.execute(
                "DELETE FROM deliveries WHERE last_at < ?", (time.time() - _FORGET_AFTER_S,)
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                [Problem(str(path), None, f"state_dir: cannot keep the delivery ledger: {exc}")]
            ) from exc

    def starts(self, message_ids: Sequence[str]) -> dict[str, int]:
        """How often processing of each message began before (absent: never recorded)."""
        found: dict[str, int] = {}
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT message_id, starts FROM deliveries WHERE message_id IN ({marks})"
            found.update(self._db.execute(query, chunk).fetchall())
        return found

    def begin(self, message_ids: Iterable[str]) -> None:
        """Record that processing of these messages begins now (durably, before it does)."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO deliveries VALUES (?, 1, ?, ?) ON CONFLICT (message_id) "
                "DO UPDATE SET starts = starts + 1, last_at = excluded.last_at",
                [(message_id, now, now) for message_id in message_ids],
            )

    def end(self, message_ids: Iterable[str]) -> None:
        """Processing of these messages ended: whatever kills the daemon now, it is not them."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM deliveries WHERE message_id = ?", [(m,) for m in message_ids]
            )

    def close(self) -> None:
        self._db.close()
