"""The command line as sysadmins and publishers use it: check, publish, run."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from tests.harness import Daemon, StompClient, syncd, write_config
from tests.services import Broker, PostgresCluster, wait_until

MAPPING = """
mappings:
  - name: items
    source: {system: shop, table: items}
    target: {database: warehouse, table: items}
    key: [sku]
    on_delete: {soft: gone_at}
"""


def sqlite_target(directory: Path) -> str:
    url = f"sqlite:///{directory / 'target.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE items (sku TEXT PRIMARY KEY, title TEXT, price NUMERIC, gone_at TEXT)"
        )
    engine.dispose()
    return url


def item(op: str, seq: int, sku: str, **row: object) -> str:
    data = {"sku": sku, **row}
    return json.dumps(
        {
            "op": op,
            "before": data if op == "d" else None,
            "after": None if op == "d" else data,
            "source": {"name": "shop", "table": "items", "seq": seq},
        }
    )


def test_check_reports_every_mistake_with_file_and_line_and_exits_2(tmp_path: Path) -> None:
    bad = MAPPING.replace("key: [sku]", "key: [sku]\n    colums: {}").replace(
        "warehouse, table", "warehose, table"
    )
    config = write_config(tmp_path, 1, sqlite_target(tmp_path), bad, dead_letter_queue="/queue/x")
    result = syncd("check", "-c", str(config))
    assert result.returncode == 2
    assert "test.yaml:7: mapping 'items': colums: unknown key; did you mean 'columns'?" in (
        result.stderr
    )
    assert "test.yaml:5" in result.stderr and "warehose" in result.stderr
    assert "2 problems found" in result.stderr


def test_check_finds_a_missing_target_column(tmp_path: Path) -> None:
    mapping = MAPPING.replace("key: [sku]", "key: [sku]\n    columns: {sku: sku, name: label}")
    config = write_config(
        tmp_path, 1, sqlite_target(tmp_path), mapping, dead_letter_queue="/queue/x"
    )
    result = syncd("check", "-c", str(config))
    assert result.returncode == 2
    assert "warehouse.items has no column label" in result.stderr
    assert syncd("check", "--offline", "-c", str(config)).returncode == 0


def test_run_with_bad_config_exits_2_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("broker: {prefetch: lots}\ndatabases: {}\n")
    result = syncd("run", "-c", str(config), timeout_s=20)
    assert result.returncode == 2
    assert "config.yaml:1: broker.prefetch" in result.stderr


def test_publish_then_run_applies_the_file_and_reports_rejected_lines(
    broker: Broker, tmp_path: Path
) -> None:
    url = sqlite_target(tmp_path)
    config = write_config(tmp_path, broker.port, url, MAPPING, dead_letter_queue="/queue/cli.DLQ")
    lines = [
        item("c", 1, "A-1", title="Lamp", price=10),
        item("c", 2, "B-2", title="Desk", price=99),
        "not json at all",
        item("u", 3, "A-1", title="Lamp", price=12),
        json.dumps({"op": "c", "source": {"name": "shop"}}),
        item("d", 4, "B-2"),
        item("c", 2, "B-2", title="Desk", price=99),  # a stale replay of the create
    ]
    result = syncd("publish", "-c", str(config), "-", stdin="\n".join(lines) + "\n")
    assert result.returncode == 4, result.stderr
    assert "<stdin>:3: message body is not JSON" not in result.stderr
    assert "<stdin>:3:" in result.stderr and "<stdin>:5:" in result.stderr
    assert "published 5 events, 2 lines rejected" in result.stderr
    daemon = Daemon(config).start()
    engine = sa.create_engine(url)

    def target() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM items ORDER BY sku")]

    try:
        wait_until(lambda: len(target()) == 2 and target()[1][3] is not None, 30, "the items")
        [a1, b2] = target()
        assert a1 == ("A-1", "Lamp", 12, None)
        assert b2[:3] == ("B-2", "Desk", 99) and b2[3] is not None  # soft-deleted, stays so
    finally:
        assert daemon.stop() == 0, daemon.log()
        engine.dispose()
    assert "syncd stopped: applied=4 duplicate=0 stale=1 dead_lettered=0" in daemon.log()


def test_publish_sets_the_group_from_the_mapping_key(broker: Broker, tmp_path: Path) -> None:
    queue_config = MAPPING.replace("system: shop", "system: groups")
    config = write_config(
        tmp_path, broker.port, "sqlite://", queue_config, dead_letter_queue="/queue/x"
    )
    event = item("c", 1, "Z-9", title="Chair").replace('"shop"', '"groups"')
    assert syncd("publish", "-c", str(config), "-", stdin=event + "\n").returncode == 0
    client = StompClient(broker.port)
    try:
        [message] = client.drain("/queue/syncd.groups")
    finally:
        client.close()
    assert message.headers["syncd-group"] == 'items:["Z-9"]'  # ActiveMQ hides JMSXGroupID
    assert message.headers["persistent"] == "true"
    assert message.body.decode() == event


def test_hosts_are_tried_in_order_so_a_dead_first_broker_fails_over(
    broker: Broker, tmp_path: Path
) -> None:
    from tests.services import free_port

    url = sqlite_target(tmp_path)
    config = write_config(tmp_path, broker.port, url, MAPPING, dead_letter_queue="/queue/fo.DLQ")
    text = config.read_text().replace(
        f'hosts: ["127.0.0.1:{broker.port}"]',
        f'hosts: ["127.0.0.1:{free_port()}", "127.0.0.1:{broker.port}"]',
    )
    config.write_text(text.replace("system: shop", "system: failover"))
    (tmp_path / "mappings" / "test.yaml").write_text(
        MAPPING.replace("system: shop", "system: failover")
    )
    event = item("c", 1, "F-1", title="Fan").replace('"shop"', '"failover"')
    assert syncd("publish", "-c", str(config), "-", stdin=event + "\n").returncode == 0
    daemon = Daemon(config).start()
    engine = sa.create_engine(url)
    try:
        query = "SELECT title FROM items WHERE sku = 'F-1'"

        def applied() -> bool:
            with engine.connect() as conn:
                return conn.exec_driver_sql(query).scalar() == "Fan"

        wait_until(applied, 30, "the event through the second broker")
    finally:
        assert daemon.stop() == 0, daemon.log()
        engine.dispose()
    assert "no broker answered" not in daemon.log()


def test_publish_to_a_broker_that_stays_down_says_what_was_not_published(
    tmp_path: Path,
) -> None:
    from tests.services import free_port

    config = write_config(
        tmp_path,
        free_port(),
        "sqlite://",
        MAPPING,
        dead_letter_queue="/queue/x",
        extra="retry: {max_elapsed_s: 2, initial_backoff_ms: 100, max_backoff_ms: 500}\n",
    )
    lines = [item("c", 1, "A-1", title="Lamp"), "", item("c", 2, "B-2", title="Desk")]
    result = syncd("publish", "-c", str(config), "-", stdin="\n".join(lines) + "\n")
    assert result.returncode == 4, result.stderr
    assert "within 2 s (retry.max_elapsed_s)" in result.stderr
    assert "confirmed 0 events; nothing from <stdin> line 1 on was published" in result.stderr


# --- capture commands --------------------------------------------------------------------------


def capture_config(directory: Path, url: str, name: str = "crm", mode: str = "logical") -> Path:
    """A capture-only config.yaml: one source, no target databases."""
    config = directory / "config.yaml"
    config.write_text(
        f"sources:\n  {name}:\n    url: {url!r}\n    capture: {mode}\n"
        "    tables: [public.customers]\n"
    )
    return config


def test_capture_install_of_an_unknown_source_exits_2_and_names_the_known_ones(
    tmp_path: Path,
) -> None:
    config = capture_config(tmp_path, "postgresql+psycopg2://syncd@127.0.0.1:1/crm")
    for action in ("install", "uninstall"):
        result = syncd("capture", action, "-c", str(config), "--source", "crn")
        assert result.returncode == 2, result.stderr
        assert "--source crn: no such source in sources: (configured: crm)" in result.stderr


def test_capture_commands_without_sources_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1, "sqlite://", MAPPING, dead_letter_queue="/queue/x")
    result = syncd("capture", "install", "-c", str(config))
    assert result.returncode == 2
    assert "sources: none configured" in result.stderr
    result = syncd("run", "--only", "capture", "-c", str(config), timeout_s=20)
    assert result.returncode == 2
    assert "sources: none configured; `syncd run --only capture`" in result.stderr


def test_capture_install_of_an_unreachable_source_exits_3(tmp_path: Path) -> None:
    from tests.services import free_port

    config = capture_config(tmp_path, f"postgresql+psycopg2://syncd@127.0.0.1:{free_port()}/crm")
    result = syncd("capture", "install", "-c", str(config))
    assert result.returncode == 3, result.stderr
    assert "syncd capture install: crm: source database" in result.stderr
    result = syncd("check", "-c", str(config))
    assert result.returncode == 3, result.stderr
    assert "source crm (postgresql+psycopg2://syncd@127.0.0.1" in result.stderr
    offline = syncd("check", "--offline", "-c", str(config))
    assert offline.returncode == 0, offline.stderr
    assert "OK (0 mappings, 1 sources)" in offline.stdout


def test_capture_install_refused_by_the_source_exits_1_and_says_why(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("cli_refused")
    for mode in ("logical", "outbox"):
        config = capture_config(tmp_path, url, name=f"refused_{mode}", mode=mode)
        result = syncd("capture", "install", "-c", str(config))
        assert result.returncode == 1, result.stderr
        assert f"syncd capture install: refused_{mode}:" in result.stderr
        assert "customers" in result.stderr  # the table that does not exist


def test_check_reports_a_bad_source_with_file_and_line(tmp_path: Path) -> None:
    config = capture_config(tmp_path, "sqlite:///source.db", mode="logical")
    result = syncd("check", "--offline", "-c", str(config))
    assert result.returncode == 2
    assert "config.yaml:3: sources.crm.url: capture: logical reads PostgreSQL only" in (
        result.stderr
    )
