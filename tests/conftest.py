"""Fixtures: a real ActiveMQ and a real PostgreSQL, started once per test session.

MariaDB targets use the server on 127.0.0.1:3306 (SYNCD_TEST_MARIADB_URL names another):
a fresh database per test.

The harness (tests/services.py) starts its own broker (activemq/syncd-broker) and a throwaway
PostgreSQL cluster on free ports, or uses the services that SYNCD_TEST_BROKER and
SYNCD_TEST_POSTGRES_URL name. A service that cannot start fails the run: never a silent skip.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.database_tls import (
    DatabasePki,
    SecurePostgres,
    TlsMariaDB,
    make_pki,
    start_secure_postgres,
    start_tls_mariadb,
)
from tests.secure_broker import SecureBroker, start_secure_broker
from tests.services import Broker, PostgresCluster, mariadb_database

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp_path: the postgres user must be able to reach the cluster.
    with tempfile.TemporaryDirectory(prefix="syncd-tests-") as directory:
        path = Path(directory)
        path.chmod(0o755)
        yield path


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[Broker]:
    started = Broker.start(services_dir / "broker")
    yield started
    started.close()


@pytest.fixture(scope="session")
def secure_broker(services_dir: Path) -> Iterator[SecureBroker]:
    """activemq-production.xml: TLS only, client certificates, logins, per-queue rights."""
    started = start_secure_broker(services_dir / "secure")
    yield started
    started.broker.close()


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.start(services_dir / "postgres")
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def database_pki(services_dir: Path) -> DatabasePki:
    """A throwaway CA and the database servers' certificate (tests/database_tls.py)."""
    return make_pki(services_dir / "pki")


@pytest.fixture(scope="session")
def secure_postgres(services_dir: Path, database_pki: DatabasePki) -> Iterator[SecurePostgres]:
    """A second cluster, serving TLS, with password roles (tests/database_tls.py)."""
    if os.environ.get("SYNCD_TEST_POSTGRES_URL"):
        pytest.fail("the TLS and password tests need a cluster of their own: unset it")
    secure = start_secure_postgres(services_dir / "secure", database_pki)
    yield secure
    secure.cluster.destroy()


@pytest.fixture(scope="session")
def tls_mariadb(database_pki: DatabasePki) -> Iterator[TlsMariaDB]:
    """A private MariaDB serving TLS (the shared one on 3306 does not)."""
    server = start_tls_mariadb(database_pki.server)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty target database of each supported dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'target.db'}"
    elif request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        yield cluster.create_database(f"target_{next(_databases)}")
    else:
        # The pid keeps parallel or leftover runs' databases apart on the shared server.
        with mariadb_database(f"syncd_target_{os.getpid()}_{next(_databases)}") as url:
            yield url
