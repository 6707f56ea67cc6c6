"""The queries verify runs on a mapping's source and target: chunk bounds, chunk digests, row
digests — over a key range or a list of keys.

Ranges are ``(lo, hi]`` in key order (``None``: unbounded), bounds held as key texts and cast
back to each side's key types, so the two databases cut the key space in the same places
(text keys in "C" order on both). An in-SQL plan digests both sides in their databases; any
other plan reads the source rows as its capture reads them, maps them with the mapping's own
code and digests what they should become inside the target database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from syncd import jsonvalue
from syncd.apply.postgresql import rows_json
from syncd.capture.snapshot import table_reader
from syncd.config.reader import display_url
from syncd.errors import (
    MappingApplyError,
    SourceUnavailable,
    SyncdError,
    TargetUnavailable,
    VerifyError,
    first_line,
)
from syncd.verify.compare import Differences, diff_rows
from syncd.verify.plan import ALIAS, Plan, bounds, keys_list

Digests = dict[str, str]  # key text -> md5 of the row text
Looked = frozenset[tuple[str, str | None, str | None]]  # (key, source digest, target digest)


@dataclass(frozen=True, slots=True)
class Summary:
    rows: int
    digest: str | None  # the sum of the rows' 64-bit hashes; None for no rows


class Sides:
    """One plan's source and target connections (each used by one thread at a time).

    ``source`` and ``target`` are sessions with :data:`~syncd.verify.plan.SESSION_OPTIONS`;
    ``capture`` reads the source as its capture does (only plans not ``in_sql`` use it).
    """

    def __init__(
        self, plan: Plan, source: Connection, capture: Connection | None, target: Connection
    ) -> None:
        self.plan = plan
        self.source = source
        self.capture = capture
        self.target = target
        self.reader = table_reader(capture, plan.source, plan.qualified_source) if capture else None

    # -- key ranges ---------------------------------------------------------------------------

    def boundary(self, lo: str | None, offset: int, hi: str | None = None) -> str | None:
        """The key ``offset`` rows after ``lo`` (0: the first after it) in the source, up to
        ``hi``; None if there are not that many."""
        plan = self.plan
        where, params = _range(plan.source_order(), plan.source_key_types(), lo, hi)
        sql = (
            f"SELECT {plan.source_key_text()} FROM {plan.source_name} AS {ALIAS} WHERE {where} "
            f"ORDER BY {', '.join(plan.source_order())} OFFSET :offset LIMIT 1"
        )
        with self._on_source("reading chunk bounds"):
            found = self.source.execute(sa.text(sql), {**params, "offset": offset}).scalar()
        return None if found is None else str(found)

    def source_summary(self, lo: str | None, hi: str | None) -> Summary:
        plan = self.plan
        where, params = _range(plan.source_order(), plan.source_key_types(), lo, hi)
        sql = _summary_sql(plan.source_row_text(), plan.source_name, where)
        with self._on_source("digesting rows"):
            rows, digest = self.source.execute(sa.text(sql), params).one()
        return Summary(int(rows), digest)

    def target_summary(self, lo: str | None, hi: str | None) -> Summary:
        plan = self.plan
        where, params = _range(plan.target_order(), plan.target_key_types(), lo, hi)
        where += f" AND {plan.target_present()}"
        sql = _summary_sql(plan.target_row_text(), plan.target_table, where)
        with self._on_target("digesting rows"):
            rows, digest = self.target.execute(sa.text(sql), params).one()
        return Summary(int(rows), digest)

    def source_range(self, lo: str | None, hi: str | None) -> Digests:
        """What the target should hold for the range, as digests."""
        plan = self.plan
        where, params = _range(plan.source_order(), plan.source_key_types(), lo, hi)
        if plan.in_sql:
            return self._source_digests(where, params)
        return self._expected(where, params, order=True)

    def target_range(self, lo: str | None, hi: str | None) -> Digests:
        plan = self.plan
        where, params = _range(plan.target_order(), plan.target_key_types(), lo, hi)
        return self._target_digests(where, params)

    # -- key lists ----------------------------------------------------------------------------

    def compare_keys(self, keys: set[str]) -> tuple[Differences, Looked]:
        """Compare just ``keys`` again: their differences, and what each side held for them
        (equal between two looks: nothing moved)."""
        if not keys:
            return Differences(), frozenset()
        plan = self.plan
        listed = jsonvalue.dumps([jsonvalue.loads(key) for key in sorted(keys)])
        source_where = f"({plan.source_keys()}) IN ({keys_list(plan.source_key_types())})"
        target_where = f"({plan.target_keys()}) IN ({keys_list(plan.target_key_types())})"
        params = {"keys": listed}
        if plan.in_sql:
            expected = self._source_digests(source_where, params)
        else:
            expected = self._expected(source_where, params, order=False)
        held = self._target_digests(target_where, params)
        looked = frozenset((key, expected.get(key), held.get(key)) for key in keys)
        return diff_rows(expected, held, plan.counts_extra), looked

    def source_rows(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The current source rows of ``keys``, as the capture would send them (``capture``)."""
        plan = self.plan
        assert self.capture is not None and self.reader is not None
        listed = jsonvalue.dumps([jsonvalue.loads(key) for key in keys])
        sql = (
            f"SELECT {plan.source_key_text()}, {', '.join(self.reader.values)} "
            f"FROM {plan.source_name} AS {ALIAS} "
            f"WHERE ({plan.source_keys()}) IN ({keys_list(plan.source_key_types())})"
        )
        with self._on_source("reading rows"):
            found = self.capture.execute(sa.text(sql), {"keys": listed}).all()
        return {str(row[0]): self.reader.to_row(row[1:]) for row in found}

    # -- digests ------------------------------------------------------------------------------

    def _source_digests(self, where: str, params: dict[str, Any]) -> Digests:
        plan = self.plan
        sql = (
            f"SELECT {plan.source_key_text()}, md5({plan.source_row_text()}) "
            f"FROM {plan.source_name} AS {ALIAS} WHERE {where}"
        )
        with self._on_source("digesting rows"):
            return {str(k): str(d) for k, d in self.source.execute(sa.text(sql), params)}

    def _target_digests(self, where: str, params: dict[str, Any]) -> Digests:
        plan = self.plan
        sql = (
            f"SELECT {plan.target_key_text()}, md5({plan.target_row_text()}) "
            f"FROM {plan.target_table} AS {ALIAS} WHERE {where} AND {plan.target_present()}"
        )
        with self._on_target("digesting rows"):
            return {str(k): str(d) for k, d in self.target.execute(sa.text(sql), params)}

    def _expected(self, where: str, params: dict[str, Any], order: bool) -> Digests:
        """Read the source rows, map them as the daemon does, digest them in the target."""
        plan = self.plan
        assert self.capture is not None and self.reader is not None
        values = ", ".join(self.reader.values)
        sql = f"SELECT {values} FROM {plan.source_name} AS {ALIAS} WHERE {where}"
        if order:
            sql += f" ORDER BY {', '.join(plan.source_order())}"
        with self._on_source("reading rows"):
            found = self.capture.execute(sa.text(sql), params).all()
        rows = []
        for read in found:
            mapped = _mapped(plan, self.reader.to_row(read))
            if mapped is not None:
                rows.append(mapped)
        if not rows:
            return {}
        digest = (
            f"SELECT {plan.target_key_text()}, md5({plan.target_row_text()}) FROM ("
            f"SELECT {plan.expected_select()} FROM json_populate_recordset("
            f"NULL::{plan.target_table}, CAST(:rows AS json)) AS {ALIAS}) AS {ALIAS}"
        )
        with self._on_target("digesting expected rows"):
            result = self.target.execute(sa.text(digest), {"rows": rows_json(rows)})
            return {str(k): str(d) for k, d in result}

    # -- errors -------------------------------------------------------------------------------

    def _on_source(self, what: str) -> Any:
        url = display_url(self.plan.source.url)
        return _translated(f"source {self.plan.source.name} ({url})", what, SourceUnavailable)

    def _on_target(self, what: str) -> Any:
        return _translated(f"database {self.plan.mapping.target_database}", what, TargetUnavailable)


def _mapped(plan: Plan, row: dict[str, Any]) -> dict[str, Any] | None:
    """The target row ``row`` should be (compared columns), or None where there should be none:
    the filter keeps it out, or the daemon dead-letters its event (a value the mapping cannot
    transform or cast)."""
    try:
        if not plan.mapping.keeps(row):
            return None
        return plan.expected_row(plan.mapping.to_target_row(row))
    except MappingApplyError:
        return None


def _summary_sql(row_text: str, table: str, where: str) -> str:
    # A sum of 64-bit row hashes: no sort, and half the cost of md5 per row. Should two
    # servers ever hash differently, every chunk would differ and be compared by md5 row
    # digests: slower, never wrong.
    return (
        f"SELECT count(*), sum(hashtextextended({row_text}, 0))::text "
        f"FROM {table} AS {ALIAS} WHERE {where}"
    )


def _range(
    order: Sequence[str], types: Sequence[str], lo: str | None, hi: str | None
) -> tuple[str, dict[str, Any]]:
    keys = ", ".join(order)
    parts, params = ["true"], {}
    if lo is not None:
        parts.append(f"({keys}) > ({bounds(types, 'lo')})")
        params["lo"] = lo
    if hi is not None:
        parts.append(f"({keys}) <= ({bounds(types, 'hi')})")
        params["hi"] = hi
    return " AND ".join(parts), params


@contextmanager
def _translated(where: str, what: str, unavailable: Callable[[str], SyncdError]) -> Iterator[None]:
    """Driver errors as syncd's: a lost connection is unavailable, anything else a failure."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        message = f"{where}: {what}: {first_line(error.orig)}"
        if error.connection_invalidated or isinstance(error, sa.exc.OperationalError):
            raise unavailable(message) from error
        raise VerifyError(message) from error
