"""Applying changes to target databases.

The consumer loop knows only the ``Applier`` contract below; SQL dialects live in their own
modules (``postgresql``, ``sqlite``) behind the shared SQLAlchemy Core applier in ``sql``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Protocol

from syncd.apply.plan import Verdict
from syncd.change import Change
from syncd.config.drivers import DRIVERS, driver_installed
from syncd.errors import PermanentApplyError

# The SQLAlchemy backends syncd applies to, each by the module of syncd.apply that speaks it.
# Imported on first use: syncd.apply.mysql needs PyMySQL, an optional extra (syncd[mysql]).
DIALECT_MODULES = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql"}


def dialect(backend: str) -> ModuleType:
    """The module of syncd.apply for ``backend``: engine, cancel, classify and statements.

    Raises PermanentApplyError naming what to install (or write) when syncd cannot use it.
    """
    module = DIALECT_MODULES.get(backend)
    if module is None:
        raise PermanentApplyError(
            f"{backend} is not a supported target (supported: {', '.join(DIALECT_MODULES)})"
        )
    if not driver_installed(DRIVERS[backend]):
        raise PermanentApplyError(
            f"{backend} needs the {DRIVERS[backend].module} module: {DRIVERS[backend].install}"
        )
    return importlib.import_module(f"syncd.apply.{module}")


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
