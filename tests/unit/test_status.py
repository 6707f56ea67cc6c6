"""`syncd status` without a broker: its numbers, the JSON shape, the table, and reading positions
from a real SQLite target."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from syncd.apply.positions import positions_table
from syncd.broker.statistics import QueueStats, parse_map_json
from syncd.commands.status import (
    MappingStatus,
    Progress,
    StatusReport,
    exit_code,
    format_duration,
    format_status,
    lag_seconds,
    read_progress,
    status_document,
)
from syncd.config import load_config
from syncd.errors import ExitCode
from syncd.mapping import Mapping, OnDelete

NOW = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)
# A reply of ActiveMQ 5.17's statistics plugin through transformation:jms-map-json (shortened).
REPLY = (
    b'{"map":{"entry":[{"string":"dequeueCount","long":117},{"string":"consumerCount","long":1},'
    b'{"string":["brokerName","syncd"]},{"string":"inflightCount","long":2},'
    b'{"string":"enqueueCount","long":120},{"string":"averageEnqueueTime","double":0.5},'
    b'{"string":"size","long":3},{"string":["destinationName","queue:\\/\\/syncd.crm"]}]}}'
)


def mapping(name: str, system: str = "crm", database: str = "warehouse") -> Mapping:
    return Mapping(
        name=name,
        source_system=system,
        source_table=f"public.{name}",
        target_database=database,
        target_table=f"dim_{name}",
        key=("id",),
        columns=None,
        on_delete=OnDelete("delete"),
        file="mappings/test.yaml",
        line=2,
    )


def report(
    *,
    broker_up: bool = True,
    statuses: tuple[MappingStatus, ...] | None = None,
) -> StatusReport:
    queues = {
        "/queue/syncd.crm": QueueStats.from_counters("/queue/syncd.crm", parse_map_json(REPLY)),
        "/queue/syncd.DLQ": QueueStats.unknown("/queue/syncd.DLQ"),
    }
    applied = Progress(1200, 1042, datetime(2025, 6, 1, 9, 59, 58, tzinfo=UTC), 1748771999600)
    return StatusReport(
        checked_at=NOW,
        source_queues={"crm": "/queue/syncd.crm"},
        dead_letter_queue="/queue/syncd.DLQ",
        queues=queues if broker_up else None,
        broker_error=None if broker_up else "no broker answered: 127.0.0.1:61613: refused",
        mappings=statuses
        or (
            MappingStatus(mapping("customers"), "ok", applied),
            MappingStatus(mapping("orders"), "never applied", Progress(0, None, None, None)),
        ),
    )


def test_a_statistics_reply_becomes_queue_stats() -> None:
    stats = QueueStats.from_counters("/queue/syncd.crm", parse_map_json(REPLY))
    assert (stats.exists, stats.depth, stats.enqueued, stats.dequeued) == (True, 3, 120, 117)
    assert (stats.consumers, stats.in_flight) == (1, 2)
    assert stats.counters["destinationName"] == "queue://syncd.crm"
    assert parse_map_json(b'{"map":""}') == {}  # the plugin's end-of-list marker


def test_lag_is_now_minus_the_newest_source_time_and_never_negative() -> None:
    assert lag_seconds(1748771999600, NOW) == 0.4
    assert lag_seconds(None, NOW) is None
    assert lag_seconds(int(NOW.timestamp() * 1000) + 5000, NOW) == 0.0  # source clock ahead


def test_durations_stay_short() -> None:
    assert [format_duration(s) for s in (0.4, 42, 750, 3 * 3600, 3 * 86400)] == [
        "0.4 s",
        "42 s",
        "12.5 min",
        "3.0 h",
        "3.0 d",
    ]


def test_json_document_has_the_documented_shape() -> None:
    document = status_document(report())
    assert json.loads(json.dumps(document)) == document
    assert document["format"] == 1 and document["ok"] is True
    assert document["checked_at"] == "2025-06-01T10:00:00+00:00"
    broker = document["broker"]
    assert (broker["reachable"], broker["error"], broker["dead_letters"]) == (True, None, 0)
    assert broker["queues"] == [
        {
            "queue": "/queue/syncd.crm",
            "role": "source",
            "system": "crm",
            "exists": True,
            "depth": 3,
            "consumers": 1,
            "in_flight": 2,
            "enqueued": 120,
            "dequeued": 117,
        },
        {
            "queue": "/queue/syncd.DLQ",
            "role": "dead-letters",
            "system": None,
            "exists": False,
            "depth": 0,
            "consumers": 0,
            "in_flight": None,
            "enqueued": 0,
            "dequeued": 0,
        },
    ]
    customers, orders = document["mappings"]
    assert customers == {
        "name": "customers",
        "source_system": "crm",
        "source_table": "public.customers",
        "queue": "/queue/syncd.crm",
        "database": "warehouse",
        "table": "dim_customers",
        "state": "ok",
        "keys": 1200,
        "last_position": 1042,
        "last_applied_at": "2025-06-01T09:59:58+00:00",
        "lag_s": 0.4,
        "error": None,
    }
    assert orders["state"] == "never applied"
    assert (orders["keys"], orders["last_position"], orders["lag_s"]) == (0, None, None)


def test_an_unreachable_broker_keeps_the_shape_with_nulls_and_exits_3() -> None:
    down = report(broker_up=False)
    document = status_document(down)
    assert document["ok"] is False and exit_code(down) is ExitCode.UNAVAILABLE
    broker = document["broker"]
    assert broker["reachable"] is False and "refused" in broker["error"]
    assert broker["dead_letters"] is None
    assert [q["queue"] for q in broker["queues"]] == ["/queue/syncd.crm", "/queue/syncd.DLQ"]
    assert all(q["depth"] is None and q["exists"] is None for q in broker["queues"])
    assert document["mappings"][0]["last_position"] == 1042  # the targets are still reported


def test_an_unreachable_target_is_marked_and_exits_3() -> None:
    statuses = (
        MappingStatus(mapping("customers"), "unreachable", None, "database warehouse: refused"),
    )
    unreachable = report(statuses=statuses)
    assert exit_code(unreachable) is ExitCode.UNAVAILABLE
    (entry,) = status_document(unreachable)["mappings"]
    assert entry["state"] == "unreachable" and entry["error"] == "database warehouse: refused"
    assert entry["keys"] is None and entry["lag_s"] is None
    text = format_status(unreachable)
    assert "unreachable" in text and "customers: database warehouse: refused" in text


def test_table_shows_queues_dead_letters_and_mappings() -> None:
    assert exit_code(report()) is ExitCode.OK
    lines = format_status(report()).splitlines()
    assert lines[1].split() == ["QUEUE", "DEPTH", "CONSUMERS", "ENQUEUED", "DEQUEUED"]
    assert lines[2].split() == ["/queue/syncd.crm", "3", "1", "120", "117"]
    assert lines[3] == "Dead letters: 0 on /queue/syncd.DLQ"
    header, customers, orders = lines[5:8]
    assert header.split("  ")[0] == "MAPPING" and "LAST APPLIED AT" in header
    assert customers.split() == [
        "customers",
        "warehouse.dim_customers",
        "1200",
        "1042",
        "2025-06-01",
        "09:59:58",
        "UTC",
        "0.4",
        "s",
    ]
    assert "never applied" in orders
    # Columns line up: every row starts its TARGET where the header does.
    assert {row.index("warehouse") for row in (customers, orders)} == {header.index("TARGET")}


def test_broker_down_table_still_lists_the_mappings() -> None:
    text = format_status(report(broker_up=False))
    assert text.startswith("Broker: unreachable: no broker answered")
    assert "customers" in text and "1042" in text


# --- reading a real SQLite target ---------------------------------------------------------------


def sqlite_config(tmp_path: Path, database: Path) -> Path:
    (tmp_path / "mappings").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f'databases:\n  warehouse: {{url: "sqlite:///{database}"}}\n')
    return config


def test_positions_are_summarised_per_mapping(tmp_path: Path) -> None:
    database = tmp_path / "target.db"
    config = load_config(sqlite_config(tmp_path, database))
    engine = sa.create_engine(f"sqlite:///{database}")
    table = positions_table(config.apply.positions_table)
    with engine.begin() as conn:
        table.create(conn)
        rows = [
            ("customers", "[1]", 7, False, 1748771990000),
            ("customers", "[2]", 9, True, 1748771995000),
            ("customers", "[3]", 8, False, None),
        ]
        conn.execute(
            table.insert(),
            [
                {"mapping": m, "row_key": k, "position": p, "deleted": d, "source_ts_ms": ts}
                for m, k, p, d, ts in rows
            ],
        )
    engine.dispose()

    statuses = read_progress(
        config.databases["warehouse"], [mapping("customers"), mapping("orders")], config
    )
    customers = statuses["customers"]
    assert customers.state == "ok" and customers.progress is not None
    assert customers.progress.keys == 3 and customers.progress.last_position == 9
    assert customers.progress.newest_source_ts_ms == 1748771995000
    applied_at = customers.progress.last_applied_at
    assert applied_at is not None and applied_at.tzinfo is not None
    assert abs((datetime.now(UTC) - applied_at).total_seconds()) < 60
    assert statuses["orders"].state == "never applied"


def test_a_target_without_positions_table_was_never_applied(tmp_path: Path) -> None:
    database = tmp_path / "target.db"
    sa.create_engine(f"sqlite:///{database}").connect().close()
    config = load_config(sqlite_config(tmp_path, database))
    statuses = read_progress(config.databases["warehouse"], [mapping("customers")], config)
    assert statuses["customers"].state == "never applied"


def test_a_missing_sqlite_file_is_unreachable_and_not_created(tmp_path: Path) -> None:
    database = tmp_path / "missing.db"
    config = load_config(sqlite_config(tmp_path, database))
    statuses = read_progress(config.databases["warehouse"], [mapping("customers")], config)
    assert statuses["customers"].state == "unreachable"
    assert "database warehouse:" in (statuses["customers"].error or "")
    assert not database.exists()
