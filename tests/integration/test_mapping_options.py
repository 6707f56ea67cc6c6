"""DESIGN.md's data-team mapping end to end: rows entering and leaving a filter, a transform
chain, sha256, casts, a constant and a metadata column — through `syncd run`, a SIGKILL and a
restart — and the dry run and `syncd check` on the same files."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.harness import Daemon, StompClient, syncd, write_config
from tests.services import Broker, PostgresCluster, wait_until

MAPPING = """
mappings:
  - name: eu_customers
    source: {system: dataeu, table: public.customers}
    target: {database: warehouse, table: eu_customer}
    key: [id]
    where: "country in ('DE', 'FR') and status <> 'closed'"
    columns:
      id: customer_id
      name: {column: full_name, transform: [trim, upper]}
      email: {column: email_hash, transform: sha256}
      signup: {column: signed_up_on, type: date}
    set:
      region: EU
      synced_from: {from: source_table}
      at: {from: position}
    on_delete: delete
"""
TABLE = """
CREATE TABLE eu_customer (customer_id integer PRIMARY KEY, full_name text, email_hash text,
                          signed_up_on date, region text, synced_from text, at bigint)
"""
QUEUE = "/queue/syncd.dataeu"


def event(seq: int, row: dict[str, Any]) -> dict[str, Any]:
    source = {"name": "dataeu", "schema": "public", "table": "customers", "seq": seq}
    return {"op": "u", "after": row, "source": source}


def passes(row: dict[str, Any]) -> bool:
    return row["country"] in ("DE", "FR") and row["status"] not in (None, "closed")


def history(keys: int, updates: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Events whose rows move in and out of the filter; and the seqs that must dead-letter.

    A value that cannot be cast dead-letters its event, whether the filter lets the row in or
    not — and so does a row that lacks the status the filter reads.
    """
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    bad: list[int] = []
    for seq in range(1, updates + 1):
        key = rng.randrange(1, keys + 1)
        row: dict[str, Any] = {
            "id": key,
            "name": f"  name {key}.{seq} ",
            "email": f"u{key}@x.org",
            "signup": rng.choice(["2024-02-29", 19000 + seq, None]),
            "country": rng.choice(["DE", "FR", "US", None]),
            "status": rng.choice(["open", "open", "closed", None]),
        }
        if seq % 97 == 0:
            row["signup"] = "yesterday"  # cannot be cast to date
            bad.append(seq)
        elif seq % 89 == 0:
            del row["status"]  # lacks a column the filter reads
            bad.append(seq)
        events.append(event(seq, row))
    return events, bad


def expected(events: list[dict[str, Any]], bad: list[int]) -> list[tuple[Any, ...]]:
    rows: dict[int, tuple[Any, ...]] = {}
    for e in events:
        seq, row = e["source"]["seq"], e["after"]
        if seq in bad:
            continue  # dead-lettered: the row keeps what it had
        if passes(row):
            signup = row["signup"]
            if isinstance(signup, int):
                signup = str(_days(signup))
            rows[row["id"]] = (
                row["id"],
                row["name"].strip().upper(),
                hashlib.sha256(row["email"].encode()).hexdigest(),
                signup,
                "EU",
                "public.customers",
                seq,
            )
        else:
            rows.pop(row["id"], None)  # left (or never entered) the filter
    return [rows[k] for k in sorted(rows)]


def _days(n: int) -> Any:
    import datetime

    return datetime.date(1970, 1, 1) + datetime.timedelta(days=n)


def test_rows_enter_and_leave_the_filter_through_a_daemon_kill(
    broker: Broker, postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("mapping_options")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(TABLE)
    dlq = "/queue/syncd.DLQ.mapping_options"
    config = write_config(tmp_path, broker.port, url, MAPPING, dead_letter_queue=dlq)
    events, bad = history(keys=60, updates=1200, seed=12)
    client = StompClient(broker.port)

    def target() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            found = conn.exec_driver_sql("SELECT * FROM eu_customer ORDER BY 1").fetchall()
        return [tuple(str(v) if hasattr(v, "isoformat") else v for v in r) for r in found]

    daemon = Daemon(config).start()
    try:
        client.send_events(QUEUE, events[:600])
        wait_until(lambda: target() != [], 30, "the first rows")
        daemon.kill()  # mid-stream: what was not acknowledged comes again
        client.send_events(QUEUE, events[600:])
        daemon = Daemon(config).start()
        want = expected(events, bad)
        wait_until(lambda: target() == want, 60, "the target to equal the filtered source")
        letters = client.drain(dlq, idle_s=1.0)
        got = sorted(json.loads(letter.body)["source"]["seq"] for letter in letters)
        assert got == bad
        for letter in letters:
            reason = letter.headers["syncd-error"]
            assert letter.headers["syncd-error-class"] == "mapping"
            assert "column signup: cannot cast the text 'yesterday' to date" in reason or (
                "the row has no column status, which 'where' reads" in reason
            ), reason
    finally:
        daemon.stop()
        client.close()
        engine.dispose()


def test_the_dry_run_prints_what_each_mapping_would_do_and_touches_nothing(
    tmp_path: Path,
) -> None:
    # A broker port where nothing listens and a target file that must not come to be.
    target = tmp_path / "never.db"
    config = write_config(
        tmp_path, 1, f"sqlite:///{target}", MAPPING, dead_letter_queue="/queue/x.DLQ"
    )
    lines = [
        event(1, {"id": 1, "name": " ana ", "email": "a@x", "signup": 0, "country": "DE",
                  "status": "open"}),
        event(2, {"id": 1, "name": "ana", "email": "a@x", "country": "US", "status": "open"}),
        event(3, {"id": 2, "signup": "never", "country": "FR", "status": "open"}),
        {"op": "d", "before": {"id": 1},
         "source": {"name": "dataeu", "schema": "public", "table": "customers", "seq": 4}},
        {"op": "c", "after": {"id": 9}, "source": {"name": "other", "table": "t", "seq": 5}},
    ]  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    result = syncd("mappings", "test", "-c", str(config), str(events), "--json")
    assert result.returncode == 4, result.stderr  # some event would be dead-lettered
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["line"], o["mapping"], o["action"]) for o in out] == [
        (1, "eu_customers", "upsert"),
        (2, "eu_customers", "filtered"),
        (3, "eu_customers", "dead-letter"),
        (4, "eu_customers", "delete"),
        (5, None, "no-mapping"),
        (6, None, "dead-letter"),
    ]
    assert out[0] == {
        "line": 1,
        "mapping": "eu_customers",
        "action": "upsert",
        "table": "eu_customer",
        "key": {"customer_id": 1},
        "row": {
            "customer_id": 1,
            "full_name": "ANA",
            "email_hash": hashlib.sha256(b"a@x").hexdigest(),
            "signed_up_on": "1970-01-01",
            "region": "EU",
            "synced_from": "public.customers",
            "at": 1,
        },
        "error": None,
    }
    assert "column signup: cannot cast the text 'never' to date" in out[2]["error"]
    table = syncd("mappings", "test", "-c", str(config), str(events))
    assert table.returncode == 4
    assert table.stdout.splitlines()[0].split() == [
        "LINE", "MAPPING", "ACTION", "TABLE", "KEY", "ROW", "/", "ERROR",
    ]  # fmt: skip
    assert "1 upsert, 1 delete, 1 filtered, 1 no-mapping, 2 dead-letter" in table.stdout
    only = syncd("mappings", "test", "-c", str(config), str(events), "--mapping", "nope")
    assert only.returncode == 2 and "no mapping named nope" in only.stderr
    assert not target.exists()


def test_check_offline_finds_a_broken_filter_at_its_file_and_line(tmp_path: Path) -> None:
    broken = MAPPING.replace("status <> 'closed'\"", 'status <> "')
    config = write_config(tmp_path, 1, "sqlite:///x.db", broken, dead_letter_queue="/queue/x")
    result = syncd("check", "--offline", "-c", str(config))
    assert result.returncode == 2
    assert "mappings/test.yaml:7: mapping 'eu_customers': where: at character" in result.stderr
    assert "expected a column, a 'text', a number" in result.stderr


def test_check_against_the_target_finds_casts_and_constants_that_cannot_fit(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("mapping_fit")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # signed_up_on an integer, region numeric: neither can fit
        conn.exec_driver_sql(
            TABLE.replace("signed_up_on date", "signed_up_on integer").replace(
                "region text", "region numeric"
            )
        )
    engine.dispose()
    config = write_config(tmp_path, 1, url, MAPPING, dead_letter_queue="/queue/x")
    result = syncd("check", "-c", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "mapping eu_customers: warehouse.eu_customer: columns.signup: type: date cannot fill "
        "signed_up_on (integer column)" in result.stderr
    )
    assert "set.region: cannot cast the text 'EU' to numeric" in result.stderr
