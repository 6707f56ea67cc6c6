"""A change: one event as one mapping sees it — what routing makes and appliers apply.

Below both: routing (``syncd.routing``) builds changes, ``syncd.apply`` applies them, and the
pipeline keeps for itself which message each came from (a change points back at nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

from syncd import jsonvalue
from syncd.events import ChangeEvent
from syncd.mapping import Mapping
from syncd.schema.types import json_type, target_type

_encode_string = json.encoder.encode_basestring  # as json.dumps(ensure_ascii=False) quotes

# The positions row of a mapping's table as a whole: the position of its last truncate. Key
# texts are JSON arrays, so "*" names no row. Every key's effective position is at least this.
TABLE_KEY = "*"


def key_text(values: Sequence[Any]) -> str:
    """The canonical text of a key, as stored in the positions table: compact JSON.

    A number with a fraction (a Decimal) is written as the shortest float text that is exactly
    its value, as syncd wrote it when it read such numbers as floats — ``1.5`` and ``1.50``
    both as ``1.5``, the same row of a numeric key — and with all its digits (trailing zeros
    dropped) only where no float is exactly it. So the positions of keys stored before stay
    found, and keys that a float would have merged stay apart.
    """
    if len(values) == 1:
        # The common single-column key, without the encoder's set-up (5 µs of the ~25 µs an
        # event costs to route); the very text json.dumps gives.
        value = values[0]
        if type(value) is int:
            return f"[{value}]"
        if type(value) is str:
            return f"[{_encode_string(value)}]"
    return jsonvalue.dumps([_key_number(v) if isinstance(v, Decimal) else v for v in values])


def _key_number(value: Decimal) -> Decimal | float:
    as_float = float(value)
    if not value.is_finite() or Decimal(repr(as_float)) == value:
        return as_float
    # normalize() rounds to the context's precision: give it every digit the value has.
    return value.normalize(Context(prec=len(value.as_tuple().digits)))


@dataclass(frozen=True, slots=True)
class NewColumn:
    """A column a change carries that its target table lacked when it was routed."""

    source_type: str | None  # as the source declares it (source.types), None if not said
    source_dialect: str  # whose words source_type is: postgresql | sqlite | mysql
    value: Any  # the change's value: the type to go by when the source declares none

    def target_type(self, target_dialect: str) -> str:
        """The column's DDL type on the target; NoSafeType if none holds the source's."""
        if self.source_type:
            return target_type(self.source_type, self.source_dialect, target_dialect)
        return json_type(self.value, target_dialect)


@dataclass(slots=True)  # not frozen: a frozen init costs ~1 µs more, per change
class Change:
    """One event as one mapping sees it: a keyed upsert or delete at a source position."""

    mapping: Mapping
    key: str  # key_text of the source key values
    target_key: dict[str, Any]  # target key column -> value
    position: int
    delete: bool
    row: dict[str, Any] | None  # the target row for upserts (may be partial)
    event: ChangeEvent
    # Target columns ``row`` lacks because the source could not send them (TOAST).
    unavailable: tuple[str, ...] = ()
    # For the upsert half of a key change: the delete of the old key, whose row holds what
    # ``unavailable`` lacks.
    moved_from: Change | None = None
    # Columns ``row`` carries that the target table lacked when the change was routed
    # (on_new_column: add): the applier adds them first (syncd.apply.evolve).
    new_columns: dict[str, NewColumn] | None = None

    @property
    def incomplete(self) -> bool:
        return bool(self.unavailable)

    @property
    def truncates(self) -> bool:
        """The whole table was emptied at this position (``key`` is TABLE_KEY)."""
        return self.key == TABLE_KEY
