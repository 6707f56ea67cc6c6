"""No secret ever reaches an output: every command, made to fail in each way it can, is grepped.

The passwords are distinctive (tests/database_tls.py's SECRET_MARKS, and the broker's in
tests/leaks.py) and given both inline (``password:``) and from a file (``password_file:``), at
debug level, in both log formats. Every run goes through tests/leaks.py's
:func:`syncd_without_leaks` or :func:`daemon_without_leaks`, which grep stdout, stderr, the log
and the metrics page for each mark; a new failure mode — a broker that refuses the login, say —
is one more call to either.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.database_tls import WRONG_PASSWORD, SecurePostgres
from tests.harness import Daemon
from tests.leaks import (
    BROKER_MARK,
    CUSTOMERS,
    QUICK,
    Setup,
    daemon_without_leaks,
    syncd_without_leaks,
)
from tests.services import Broker, free_port, wait_until


@pytest.fixture(params=["inline, text logs", "password_file, json logs"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, broker: Broker) -> Setup:
    """Both ways of giving a secret, crossed with both log formats; the real broker."""
    in_files = request.param.startswith("password_file")
    return Setup(
        tmp_path,
        broker.port,
        None,
        secrets_in_files=in_files,
        log_format="json" if in_files else "text",
    )


@pytest.fixture
def warehouse(secure_postgres: SecurePostgres) -> Iterator[str]:
    """A target database the syncd_pw role owns a customers table in; its URL (no password)."""
    url = secure_postgres.create_database(f"warehouse_{free_port()}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(CUSTOMERS)
        conn.exec_driver_sql("ALTER TABLE customers OWNER TO syncd_pw")
    engine.dispose()
    yield secure_postgres.role_url("syncd_pw", url.rsplit("/", 1)[1]) + "?" + QUICK


@pytest.fixture
def crm(secure_postgres: SecurePostgres) -> str:
    """A source database with a customers table; its URL for the syncd_src role."""
    url = secure_postgres.create_database(f"crm_{free_port()}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(CUSTOMERS.replace("customers", "public.customers"))
        conn.exec_driver_sql("ALTER TABLE public.customers OWNER TO syncd_src")
    engine.dispose()
    return secure_postgres.role_url("syncd_src", url.rsplit("/", 1)[1]) + "?" + QUICK


def nowhere_url(role: str) -> str:
    """A PostgreSQL URL on a port where nothing listens."""
    return f"postgresql+psycopg2://{role}@127.0.0.1:{free_port()}/nothing?{QUICK}"


# --- the commands, made to fail -----------------------------------------------------------------


def test_check_with_the_right_passwords_passes(setup: Setup, warehouse: str, crm: str) -> None:
    """The control: the secrets are really used, so the failures below are theirs."""
    good = Setup(**{**setup.__dict__, "target_url": warehouse, "source_url": crm})
    output = syncd_without_leaks(good, "check", exit_code=0)
    assert "OK (1 mappings, checked against their target tables, 1 sources (reachable))" in output


def test_check_with_a_wrong_target_password(setup: Setup, warehouse: str) -> None:
    wrong = Setup(**{**setup.__dict__, "target_url": warehouse, "target_password": WRONG_PASSWORD})
    output = syncd_without_leaks(wrong, "check", exit_code=3)
    assert 'password authentication failed for user "syncd_pw"' in output


def test_check_with_an_unreachable_target(setup: Setup) -> None:
    unreachable = Setup(**{**setup.__dict__, "target_url": nowhere_url("syncd_pw")})
    output = syncd_without_leaks(unreachable, "check", exit_code=3)
    assert "Connection refused" in output


def test_check_with_a_wrong_source_password(setup: Setup, warehouse: str, crm: str) -> None:
    wrong = Setup(
        **{
            **setup.__dict__,
            "target_url": warehouse,
            "source_url": crm,
            "source_password": WRONG_PASSWORD,
        }
    )
    output = syncd_without_leaks(wrong, "check", exit_code=3)
    assert 'password authentication failed for user "syncd_src"' in output
    assert "syncd_src:***@" in output  # the source is named by its URL, password hidden


def test_config_mistakes_never_echo_a_secret(setup: Setup) -> None:
    """A URL that holds a password and is wrong, or is given a second password."""
    for url in (
        f"postgresql+psycopg2://syncd:{BROKER_MARK}@127.0.0.1:notaport/warehouse",
        f"postgresql+psycopg2://syncd:{BROKER_MARK}@127.0.0.1:5432/warehouse",
        f"no such scheme {BROKER_MARK}",
    ):
        mistaken = Setup(**{**setup.__dict__, "target_url": url})
        output = syncd_without_leaks(mistaken, "check", "--offline", exit_code=2)
        assert "databases.warehouse" in output


def test_status_with_a_wrong_password_and_no_broker(setup: Setup, warehouse: str) -> None:
    wrong = Setup(
        **{
            **setup.__dict__,
            "target_url": warehouse,
            "target_password": WRONG_PASSWORD,
            "broker_port": free_port(),
        }
    )
    text = syncd_without_leaks(wrong, "status", exit_code=3)
    assert "password authentication failed" in text
    document = syncd_without_leaks(wrong, "status", "--json", exit_code=3)
    assert "password authentication failed" in document


def test_dlq_and_publish_without_a_broker(setup: Setup, warehouse: str, tmp_path: Path) -> None:
    away = Setup(**{**setup.__dict__, "target_url": warehouse, "broker_port": free_port()})
    syncd_without_leaks(away, "dlq", "list", exit_code=3)
    syncd_without_leaks(away, "dlq", "list", "--json", exit_code=3)
    syncd_without_leaks(away, "dlq", "replay", "--all", exit_code=3)
    events = tmp_path / "events.jsonl"
    event = {"op": "c", "after": {"id": 1}, "source": {"name": "crm", "table": "customers"}}
    events.write_text(json.dumps({**event, "source": {**event["source"], "seq": 1}}) + "\n")
    # 4, as README's table says: the events were not confirmed (it retried, then gave up).
    syncd_without_leaks(away, "publish", str(events), exit_code=4)


def test_capture_commands_with_a_wrong_or_unreachable_source(setup: Setup, crm: str) -> None:
    wrong = Setup(**{**setup.__dict__, "source_url": crm, "source_password": WRONG_PASSWORD})
    for command in (("capture", "install"), ("capture", "uninstall")):
        output = syncd_without_leaks(wrong, *command, exit_code=3)
        assert "password authentication failed" in output
    output = syncd_without_leaks(wrong, "snapshot", "--source", "crm", exit_code=3)
    assert "password authentication failed" in output
    away = Setup(**{**setup.__dict__, "source_url": nowhere_url("syncd_src")})
    syncd_without_leaks(away, "capture", "install", exit_code=3)
    syncd_without_leaks(away, "snapshot", "--source", "crm", exit_code=3)


def test_capture_install_shows_the_source_with_its_password_hidden(setup: Setup, crm: str) -> None:
    right = Setup(**{**setup.__dict__, "source_url": crm})
    output = syncd_without_leaks(right, "capture", "install", exit_code=0)
    assert "syncd_src:***@127.0.0.1" in output
    syncd_without_leaks(right, "capture", "uninstall", exit_code=0)


# --- the daemon ---------------------------------------------------------------------------------


def test_run_waits_for_an_unreachable_target_without_a_secret(setup: Setup) -> None:
    away = Setup(**{**setup.__dict__, "target_url": nowhere_url("syncd_pw")})
    daemon_without_leaks(away, "Connection refused")


def test_run_with_a_wrong_target_password(setup: Setup, warehouse: str) -> None:
    wrong = Setup(**{**setup.__dict__, "target_url": warehouse, "target_password": WRONG_PASSWORD})
    daemon_without_leaks(wrong, "password authentication failed")


def test_run_capture_with_a_wrong_source_password(setup: Setup, crm: str) -> None:
    wrong = Setup(**{**setup.__dict__, "source_url": crm, "source_password": WRONG_PASSWORD})
    daemon_without_leaks(wrong, "password authentication failed", "--only", "capture")


def test_outbox_capture_with_a_wrong_source_password(setup: Setup, crm: str) -> None:
    wrong = Setup(
        **{
            **setup.__dict__,
            "source_url": crm,
            "source_password": WRONG_PASSWORD,
            "source_capture": "outbox",
        }
    )
    output = syncd_without_leaks(wrong, "capture", "install", exit_code=3)
    assert "password authentication failed" in output
    daemon_without_leaks(wrong, "password authentication failed", "--only", "capture")


def test_a_reload_to_a_wrong_password_says_so_without_it(setup: Setup, warehouse: str) -> None:
    right = Setup(**{**setup.__dict__, "target_url": warehouse})
    wrong = Setup(**{**right.__dict__, "target_password": WRONG_PASSWORD})

    def reload_with_the_wrong_password(daemon: Daemon) -> None:
        wrong.write()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in daemon.log(), 30, "the reload to fail")

    log = daemon_without_leaks(
        right, "syncd applying", while_running=reload_with_the_wrong_password
    )
    assert "password authentication failed" in log


def test_run_with_every_secret_right_logs_none_at_debug_level(
    setup: Setup, warehouse: str, crm: str, secure_postgres: SecurePostgres
) -> None:
    """The working daemon's debug log (pool, driver, statements, broker frames) and its
    metrics hold none, while a change travels from the source to the target."""
    right = Setup(**{**setup.__dict__, "target_url": warehouse, "source_url": crm})
    source = sa.engine.make_url(crm).set(username="postgres", query={})
    target = sa.engine.make_url(warehouse).set(username="postgres", query={})

    def one_change_travels(_daemon: Daemon) -> None:
        with sa.create_engine(source).begin() as conn:
            conn.exec_driver_sql("INSERT INTO public.customers VALUES (1, 'Ana')")
        engine = sa.create_engine(target)
        query = "SELECT name FROM customers WHERE id = 1"

        def arrived() -> bool:
            with engine.connect() as conn:
                return conn.exec_driver_sql(query).scalar() == "Ana"

        wait_until(arrived, 30, "the captured row to reach the target")
        engine.dispose()

    syncd_without_leaks(right, "capture", "install", exit_code=0)
    try:
        daemon_without_leaks(right, "capturing to", metrics=True, while_running=one_change_travels)
    finally:
        syncd_without_leaks(right, "capture", "uninstall", exit_code=0)
