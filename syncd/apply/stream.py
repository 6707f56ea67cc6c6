"""One target transaction that takes a large source transaction's changes piece by piece.

A source transaction of many parts (``syncd.pipeline.transactions``) is applied part by part — each
part decoded, applied and let go before the next is decoded — inside one database
transaction per target database, committed once every part is in: memory holds one part's
changes, not the transaction's. The statement deadline (``apply.timeout_s``) applies to each
piece, not to the whole: a transaction of 100,000 rows may take longer than one batch may.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from sqlalchemy.engine import Connection, Engine

from syncd.apply.plan import Verdict
from syncd.change import Change


class Stream:
    """An open transaction on one target database: ``apply`` pieces, then ``commit``.

    ``close`` without ``commit`` rolls everything back. Errors are the applier's own
    (``TargetUnavailable``, ``PermanentApplyError``): after one, close and start again.
    """

    def __init__(
        self,
        engine: Engine,
        translated: Callable[[], AbstractContextManager[None]],
        deadline: Callable[[Connection], AbstractContextManager[None]],
        apply_in: Callable[[Connection, Sequence[Change]], list[Verdict]],
    ):
        self._translated = translated
        self._deadline = deadline
        self._apply_in = apply_in
        self._stack = ExitStack()
        with self._translated():
            self._conn: Connection = self._stack.enter_context(engine.connect())
            self._transaction: Any = self._conn.begin()

    def apply(self, changes: Sequence[Change]) -> list[Verdict]:
        with self._translated(), self._deadline(self._conn):
            return self._apply_in(self._conn, changes)

    def commit(self) -> None:
        with self._translated(), self._deadline(self._conn):
            self._transaction.commit()

    def close(self) -> None:
        with self._translated():
            if self._transaction.is_active:
                self._transaction.rollback()
            self._stack.close()
