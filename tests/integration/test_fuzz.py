"""Fuzzing: hostile bodies through decode → route → plan → each dialect's real driver.

Bounded in `make test` (the ``default`` profile: a few seconds per dialect); `make fuzz` runs
the ``fuzz`` profile (HYPOTHESIS_PROFILE=fuzz) for minutes. A body that ever broke the path is
kept in tests/data/hostile/ and replayed here on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings

from tests import hostile
from tests.services import PostgresCluster

settings.register_profile(
    "default",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="module")
def adapters(postgres: PostgresCluster) -> Iterator[dict[str, hostile.Adapter]]:
    url = postgres.create_database("fuzz_adapters")
    connection = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    yield {
        "postgresql": hostile.postgresql_adapter(connection),
        "sqlite": hostile.sqlite_adapter(),
        "mysql": hostile.mysql_adapter(),
    }
    connection.close()


@pytest.mark.parametrize("dialect", hostile.DIALECTS)
def test_no_body_gets_past_decoding_and_routing_to_break_a_driver(
    dialect: str, adapters: dict[str, hostile.Adapter]
) -> None:
    @given(hostile.bodies())
    def check(body: bytes) -> None:
        hostile.through_pipeline(body, dialect, adapters[dialect])

    check()


@pytest.mark.parametrize("path", hostile.regression_bodies(), ids=lambda p: p.name)
def test_bodies_that_once_broke_the_path_are_dead_lettered_with_a_reason(
    path: Path, adapters: dict[str, Any]
) -> None:
    body = path.read_bytes()
    for dialect in hostile.DIALECTS:
        outcome = hostile.through_pipeline(body, dialect, adapters[dialect])
        # good-*: applied everywhere; NAME.postgresql.json: only PostgreSQL cannot store it;
        # NAME.postgresql+mysql.json: those two cannot (SQLite stores any number).
        only = set(path.suffixes[0][1:].split("+")) if len(path.suffixes) > 1 else None
        if path.name.startswith("good-") or (only is not None and dialect not in only):
            assert outcome.changes and not outcome.dead_letters, (dialect, outcome)
        else:
            assert outcome.dead_letters, f"{dialect}: {path.name} was not dead-lettered"
            assert all(reason for _, reason in outcome.dead_letters)
