"""Column transforms: what a mapping's ``transform:`` names, applied in the order listed.

Each takes text and gives text (or null); null stays null whatever the transform, and a value
that is not text is a mapping error naming its type (the event is dead-lettered, its
neighbours apply). A column's ``type:`` cast applies after its transforms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from syncd.errors import MappingApplyError

MASK_KEEPS = 4  # `mask` shows this many last characters
MASK_CHARACTER = "*"


def _mask(text: str) -> str:
    """All but the last four characters hidden; a value of four or fewer is hidden whole."""
    if len(text) <= MASK_KEEPS:
        return MASK_CHARACTER * len(text)
    return MASK_CHARACTER * (len(text) - MASK_KEEPS) + text[-MASK_KEEPS:]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# name -> (what it does, for `syncd check` and the README; the function on text)
TRANSFORMS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "lower": ("lower-case", str.lower),
    "upper": ("upper-case", str.upper),
    "trim": ("strip white space at both ends", str.strip),
    "sha256": ("hex SHA-256 of the UTF-8 text (64 characters): PII never lands", _sha256),
    "mask": (f"keep the last {MASK_KEEPS} characters, {MASK_CHARACTER} for the rest", _mask),
    "nullif_empty": ("empty text becomes null", lambda text: text or None),
}


def apply_transforms(names: Sequence[str], value: Any) -> Any:
    """``value`` through each transform of ``names`` in turn; raises MappingApplyError."""
    for name in names:
        if value is None:
            return None
        if not isinstance(value, str):
            raise MappingApplyError(f"transform '{name}' needs text, found {_kind(value)}")
        value = TRANSFORMS[name][1](value)
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    return "a JSON array" if isinstance(value, list) else "a JSON object"
