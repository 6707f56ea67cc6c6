"""Database TLS: ``?sslmode=verify-full&sslrootcert=…`` for a PostgreSQL target and a capture
source, with the password from ``password_file`` — against a cluster that lets the role in over
TLS only (tests/database_tls.py: ``hostssl`` with scram, plain TCP rejected).

The CA's path is relative in the URL: it resolves against the config's directory, while the
daemon runs from elsewhere (the repository).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.database_tls import TLS_PASSWORD, DatabasePki, SecurePostgres, TlsMariaDB
from tests.harness import Daemon
from tests.leaks import CUSTOMERS, QUICK, Setup, daemon_without_leaks, syncd_without_leaks
from tests.services import Broker, free_port, wait_until

VERIFIED = "sslmode=verify-full&sslrootcert=tls/ca.pem&" + QUICK


def tls_database(secure: SecurePostgres, name: str, table: str) -> str:
    """A fresh database with ``table`` owned by the TLS-only role; its URL for that role."""
    url = secure.create_database(f"{name}_{free_port()}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(CUSTOMERS.replace("customers", table))
        conn.exec_driver_sql(f"ALTER TABLE {table} OWNER TO syncd_tls")
    engine.dispose()
    return secure.role_url("syncd_tls", url.rsplit("/", 1)[1])


@pytest.fixture
def tls_setup(tmp_path: Path, broker: Broker, secure_postgres: SecurePostgres) -> Setup:
    """Target and source over verified TLS, passwords from files; the CA in tls/ca.pem."""
    (tmp_path / "tls").mkdir()
    shutil.copyfile(secure_postgres.authority.cert_file, tmp_path / "tls" / "ca.pem")
    return Setup(
        tmp_path,
        broker.port,
        tls_database(secure_postgres, "warehouse", "customers") + "?" + VERIFIED,
        tls_database(secure_postgres, "crm", "public.customers") + "?" + VERIFIED,
        target_password=TLS_PASSWORD,
        source_password=TLS_PASSWORD,
        secrets_in_files=True,
    )


def test_the_tls_only_role_is_refused_without_tls(tls_setup: Setup) -> None:
    """The control: the server really insists on TLS, so passing checks below used it."""
    plain = tls_setup.target_url.replace("sslmode=verify-full", "sslmode=disable")
    output = syncd_without_leaks(Setup(**{**tls_setup.__dict__, "target_url": plain}), "check",
                                 exit_code=3)  # fmt: skip
    assert 'rejects connection for host "127.0.0.1", user "syncd_tls"' in output
    assert "no encryption" in output


def test_check_reaches_target_and_source_over_verified_tls(tls_setup: Setup) -> None:
    output = syncd_without_leaks(tls_setup, "check", exit_code=0)
    assert "1 sources (reachable)" in output


def test_a_change_travels_from_source_to_target_over_tls(
    tls_setup: Setup, secure_postgres: SecurePostgres
) -> None:
    """Logical capture (psycopg2's replication connection, built from the URL apart from
    SQLAlchemy) and the applier both connect with the URL's TLS settings and password_file."""
    syncd_without_leaks(tls_setup, "capture", "install", exit_code=0)
    source = sa.engine.make_url(secure_postgres.cluster.url(_database(tls_setup.source_url)))
    target = sa.engine.make_url(secure_postgres.cluster.url(_database(tls_setup.target_url)))

    def one_change_travels(_daemon: Daemon) -> None:
        with sa.create_engine(source).begin() as conn:
            conn.exec_driver_sql("INSERT INTO public.customers VALUES (7, 'Ana')")
        engine = sa.create_engine(target)

        def arrived() -> bool:
            with engine.connect() as conn:
                name = conn.exec_driver_sql("SELECT name FROM customers WHERE id = 7").scalar()
                return name == "Ana"

        wait_until(arrived, 30, "the captured row to reach the target")
        with engine.connect() as conn:
            # Every connection syncd holds on the cluster now is encrypted.
            insecure = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) "
                "WHERE usename = 'syncd_tls' AND NOT ssl"
            ).scalar()
            held = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'syncd_tls'"
            ).scalar()
        engine.dispose()
        assert held and insecure == 0

    try:
        daemon_without_leaks(tls_setup, "capturing to", while_running=one_change_travels)
    finally:
        syncd_without_leaks(tls_setup, "capture", "uninstall", exit_code=0)


def _database(url: str) -> str:
    return sa.engine.make_url(url).database or ""


def test_a_ca_that_did_not_sign_the_server_fails_verification(
    tls_setup: Setup, secure_postgres: SecurePostgres
) -> None:
    """Exit 3 (the database cannot be reached, as README's table says), in so many words."""
    shutil.copyfile(secure_postgres.stranger.cert_file, tls_setup.directory / "tls" / "ca.pem")
    for command in (("check",), ("capture", "install")):
        output = syncd_without_leaks(tls_setup, *command, exit_code=3)
        assert "certificate verify failed" in output, output
    only_source = Setup(**{**tls_setup.__dict__, "target_url": None})
    output = syncd_without_leaks(only_source, "check", exit_code=3)
    assert "source crm (postgresql+psycopg2://syncd_tls:***@127.0.0.1" in output
    assert "certificate verify failed" in output


# --- MariaDB (PyMySQL) ---------------------------------------------------------------------------


@pytest.fixture
def mariadb_setup(tmp_path: Path, broker: Broker, tls_mariadb: TlsMariaDB,
                  database_pki: DatabasePki) -> Setup:  # fmt: skip
    """A target for a user that the server lets in over TLS only; the CA in tls/ca.pem."""
    database = f"warehouse_{free_port()}"
    with tls_mariadb.admin().connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
        conn.exec_driver_sql(f"CREATE TABLE {database}.{CUSTOMERS.split(' ', 2)[2]}")
        conn.exec_driver_sql(
            "CREATE USER IF NOT EXISTS syncd_tls IDENTIFIED BY %s REQUIRE SSL", (TLS_PASSWORD,)
        )
        conn.exec_driver_sql(f"GRANT ALL ON {database}.* TO syncd_tls")
    (tmp_path / "tls").mkdir()
    shutil.copyfile(database_pki.authority.cert_file, tmp_path / "tls" / "ca.pem")
    return Setup(
        tmp_path,
        broker.port,
        tls_mariadb.url("syncd_tls", database) + "?ssl_ca=tls/ca.pem",
        target_password=TLS_PASSWORD,
        secrets_in_files=True,
    )


def test_mariadb_target_over_verified_tls_with_ssl_ca(mariadb_setup: Setup) -> None:
    output = syncd_without_leaks(mariadb_setup, "check", exit_code=0)
    assert "OK (1 mappings, checked against their target tables)" in output


def test_mariadb_with_a_ca_that_did_not_sign_the_server(
    mariadb_setup: Setup, database_pki: DatabasePki
) -> None:
    shutil.copyfile(database_pki.stranger.cert_file, mariadb_setup.directory / "tls" / "ca.pem")
    output = syncd_without_leaks(mariadb_setup, "check", exit_code=3)
    assert "certificate verify failed" in output
