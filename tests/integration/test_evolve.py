"""on_new_column: add against each target: racing appliers add a column once, odd names and
NULLs land, and a type the target cannot hold dead-letters only the events that carry it."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.apply.evolve import CHANGES
from syncd.apply.plan import Verdict
from syncd.apply.sql import SqlApplier
from syncd.change import Change
from syncd.errors import PermanentApplyError
from syncd.events import ChangeEvent, decode_event
from syncd.mapping import Mapping, OnDelete
from syncd.routing import Router

pytestmark = pytest.mark.integration

ODD = 'select"; DROP TABLE items; -- ☃'  # a reserved word, a quote, SQL, unicode
MIRROR = Mapping(
    name="items",
    source_system="crm",
    source_table="public.items",
    target_database="warehouse",
    target_table="items",
    key=("id",),
    columns=None,
    on_delete=OnDelete("delete"),
    file="test.yaml",
    line=1,
    on_new_column="add",
)


def event(key: int, after: dict[str, Any], types: dict[str, str] | None) -> ChangeEvent:
    source: dict[str, Any] = {"name": "crm", "schema": "public", "table": "items", "seq": key}
    if types is not None:
        source["types"] = types
    return decode_event({"op": "c", "after": {"id": key, **after}, "source": source})


def applier_and_router(url: str) -> tuple[SqlApplier, Router]:
    applier = SqlApplier("warehouse", url, [MIRROR], "syncd_positions")
    assert applier.prepare() == []
    router = Router(
        [MIRROR],
        applier.target_columns,
        applier.target_limits,
        lambda m, key, row: applier.check_row(m, key, row),
    )
    return applier, router


@pytest.fixture
def url(target_url: str) -> str:
    engine = sa.create_engine(target_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))")
    engine.dispose()
    return target_url


def rows(url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            table = sa.Table("items", sa.MetaData(), autoload_with=conn)
            return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]
    finally:
        engine.dispose()


def test_two_appliers_racing_to_add_the_same_column_add_it_once(url: str) -> None:
    pairs = [applier_and_router(url) for _ in range(2)]
    before = CHANGES.snapshot().get(("warehouse", "items", "add_column"), 0)
    types = {"id": "integer", "name": "text", ODD: "numeric(8,3)", "seen": "boolean"}
    start = threading.Barrier(len(pairs))
    verdicts: list[list[Verdict]] = []
    failures: list[BaseException] = []

    def apply(index: int) -> None:
        applier, router = pairs[index]
        key = index + 1
        changes: list[Change] = router.changes_for(
            event(key, {"name": f"n{key}", ODD: "1.250" if key == 1 else None, "seen": True}, types)
        )
        start.wait()
        try:
            verdicts.append(applier.apply_batch(changes))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(len(pairs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert failures == []
        assert verdicts == [[Verdict.APPLIED], [Verdict.APPLIED]]
        added = CHANGES.snapshot()[("warehouse", "items", "add_column")] - before
        assert added == 2  # two columns, each added by one of the two
        found = rows(url)
        assert [r["id"] for r in found] == [1, 2]
        assert [str(r[ODD]) if r[ODD] is not None else None for r in found] == ["1.250", None]
        assert [bool(r["seen"]) for r in found] == [True, True]
        # Both appliers now see the column: the next event carrying it adds nothing.
        applier, router = pairs[0]
        changes = router.changes_for(event(3, {ODD: "2"}, types))
        assert changes[0].new_columns is None
        assert applier.apply_batch(changes) == [Verdict.APPLIED]
    finally:
        for applier, _router in pairs:
            applier.close()


def test_a_type_the_target_cannot_hold_refuses_only_its_events(url: str) -> None:
    applier, router = applier_and_router(url)
    try:
        bad = router.changes_for(event(1, {"pair": "(1,2)"}, {"pair": "mood_pair"}))
        with pytest.raises(PermanentApplyError, match="cannot add it: mood_pair: "):
            applier.apply_batch(bad)
        good = router.changes_for(event(2, {"name": "fine"}, None))
        assert applier.apply_batch(good) == [Verdict.APPLIED]
        assert [r["id"] for r in rows(url)] == [2] and "pair" not in rows(url)[0]
    finally:
        applier.close()


def test_an_undeclared_column_takes_a_type_from_its_value(url: str) -> None:
    explicit = replace(MIRROR, on_new_column_given=True)
    applier = SqlApplier("warehouse", url, [explicit], "syncd_positions")
    assert applier.prepare() == []
    router = Router([explicit], applier.target_columns, applier.target_limits)
    try:
        changes = router.changes_for(event(1, {"n": 2**40, "doc": {"a": 1.5}, "t": None}, None))
        changes += router.changes_for(event(2, {"t": "text now"}, None))
        assert applier.apply_batch(changes) == [Verdict.APPLIED, Verdict.APPLIED]
        found = rows(url)
        assert found[0]["n"] == 2**40 and found[1]["t"] == "text now"
    finally:
        applier.close()
