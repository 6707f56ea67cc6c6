"""Applying changes to target databases.

The consumer loop knows only the ``Applier`` contract below; SQL dialects live in their own
modules (``postgresql``, ``sqlite``) behind the shared SQLAlchemy Core applier in ``sql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from syncd.apply.plan import Change, Verdict


class Applier(Protocol):
    """Applies batches of changes to one target database, each batch in one transaction."""

    name: str  # the database's name in config.yaml

    def apply_batch(self, changes: Sequence[Change]) -> list[Verdict]:
        """Apply every change in one transaction and commit; a verdict per change, in order.

        Either the whole batch — rows and positions — is committed, or nothing is.
        Raises ``TargetUnavailable`` for failures that may pass (connection lost, deadlock,
        lock timeout) and ``PermanentApplyError`` when the target rejects the batch for good.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
