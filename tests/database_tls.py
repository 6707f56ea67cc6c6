"""A throwaway certificate authority (openssl) and a PostgreSQL cluster that requires TLS and
passwords for some of its roles: what the secrets and database-TLS tests connect to.

The cluster is a second one (``secure_postgres`` in tests/conftest.py), started only by the
tests that ask for it, so the main cluster's start stays as fast as it was.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

from tests.services import (
    LOCALHOST,
    PostgresCluster,
    ServerCertificate,
    free_port,
    log_tail,
    wait_until,
)

# Distinctive secrets. Each starts with a mark that the leak test greps every output for: the
# mark survives URL-encoding, the characters after it (which need escaping in a URL) do not.
SECRET_MARKS = ("S3cr3t-db-Zq9", "S3cr3t-src-Wp4", "S3cr3t-tls-Hn2", "S3cr3t-wrong-Jd8")
TARGET_PASSWORD = SECRET_MARKS[0] + "#a@b/c"  # role syncd_pw: password login over plain TCP
SOURCE_PASSWORD = SECRET_MARKS[1] + "%d e"  # role syncd_src: a capture source
TLS_PASSWORD = SECRET_MARKS[2] + ":f?g"  # role syncd_tls: password login over TLS only
WRONG_PASSWORD = SECRET_MARKS[3] + "&h'"  # what a sysadmin mistyped is a secret too

ROLES = {"syncd_pw": TARGET_PASSWORD, "syncd_src": SOURCE_PASSWORD, "syncd_tls": TLS_PASSWORD}
# Decided top down, before initdb's trust lines: syncd_tls only over TLS, and with its
# password; the other two with their passwords over plain TCP.
HBA = (
    f"hostssl all syncd_tls {LOCALHOST}/32 scram-sha-256",
    f"host    all syncd_tls {LOCALHOST}/32 reject",
    f"host    all syncd_pw  {LOCALHOST}/32 scram-sha-256",
    f"host    all syncd_src {LOCALHOST}/32 scram-sha-256",
)
CERT_DAYS = 2


@dataclass(frozen=True)
class Authority:
    """A CA's certificate (what clients trust) and key (what signs the servers')."""

    cert_file: Path
    key_file: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_authority(directory: Path, name: str) -> Authority:
    """A self-signed CA named ``name`` (EC P-256: fast to make, accepted everywhere)."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = Authority(directory / f"{name}.pem", directory / f"{name}.key")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(authority.key_file), "-out", str(authority.cert_file),
        "-days", str(CERT_DAYS), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return authority


def make_server_certificate(directory: Path, authority: Authority) -> ServerCertificate:
    """A server certificate signed by ``authority``, valid for 127.0.0.1 and localhost."""
    key, request = directory / "server.key", directory / "server.csr"
    certificate = ServerCertificate(directory / "server.pem", key)
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName=IP:{LOCALHOST},DNS:localhost\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(request), "-subj", "/CN=localhost",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(authority.cert_file),
        "-CAkey", str(authority.key_file), "-CAcreateserial", "-days", str(CERT_DAYS),
        "-out", str(certificate.cert_file), "-extfile", str(extensions),
    )  # fmt: skip
    return certificate


@dataclass(frozen=True)
class SecurePostgres:
    """The TLS cluster, the CA that signed it, and a CA that did not."""

    cluster: PostgresCluster
    authority: Authority
    stranger: Authority  # a CA that signed nothing the cluster serves

    def create_database(self, name: str) -> str:
        """A fresh database every role may use; its URL (as the trusted superuser)."""
        url = self.cluster.create_database(name)
        engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                # Capture install creates a publication: that takes CREATE on the database.
                connection.exec_driver_sql(f'GRANT ALL ON DATABASE "{name}" TO PUBLIC')
                connection.exec_driver_sql("GRANT ALL ON SCHEMA public TO PUBLIC")
        finally:
            engine.dispose()
        return url

    def role_url(self, role: str, database: str, **query: str) -> str:
        """The URL of ``database`` for ``role``, with no password (it comes from the config)."""
        url = sqlalchemy.engine.make_url(self.cluster.url(database))
        return url.set(username=role, query=query).render_as_string(hide_password=False)


@dataclass(frozen=True)
class DatabasePki:
    """The test CA, the server certificate it signed (for 127.0.0.1 and localhost), and a CA
    that signed nothing the servers serve."""

    authority: Authority
    stranger: Authority
    server: ServerCertificate


def make_pki(directory: Path) -> DatabasePki:
    authority = make_authority(directory, "syncd-test-ca")
    stranger = make_authority(directory, "stranger-ca")
    return DatabasePki(authority, stranger, make_server_certificate(directory, authority))


def start_secure_postgres(workdir: Path, pki: DatabasePki) -> SecurePostgres:
    cluster = PostgresCluster.start(workdir / "postgres", tls=pki.server, hba=HBA)
    engine = sqlalchemy.create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for role, password in ROLES.items():
                # psycopg2 quotes the password into the statement (DDL takes no parameters).
                connection.exec_driver_sql(
                    f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD %s", (password,)
                )
    finally:
        engine.dispose()
    return SecurePostgres(cluster, pki.authority, pki.stranger)


# ------------------------------------------------------------------------------- MariaDB

MARIADB_BIN = Path("/usr/sbin/mariadbd")
MARIADB_INSTALL = Path("/usr/bin/mariadb-install-db")


@dataclass(frozen=True)
class TlsMariaDB:
    """A private MariaDB server that serves TLS, on a port of its own; root (no password) over
    its socket.

    The shared server on 3306 is the other tests' and speaks no TLS: this one is started and
    stopped by the harness alone.
    """

    directory: Path
    port: int

    @property
    def socket(self) -> Path:
        return self.directory / "mysql.sock"

    def admin(self) -> sqlalchemy.Engine:
        return sqlalchemy.create_engine(
            f"mysql+pymysql://root@localhost/mysql?unix_socket={self.socket}",
            isolation_level="AUTOCOMMIT",
        )

    def url(self, user: str, database: str) -> str:
        return f"mysql+pymysql://{user}@{LOCALHOST}:{self.port}/{database}"

    def stop(self) -> None:
        pid_file = self.directory / "mariadbd.pid"
        if not pid_file.is_file():
            return
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 60, what="the TLS MariaDB to stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_tls_mariadb(certificate: ServerCertificate) -> TlsMariaDB:
    """mariadb-install-db a fresh data directory under /tmp (the mysql user must reach it) and
    start mariadbd with TLS on a free port."""
    for tool in (MARIADB_BIN, MARIADB_INSTALL):
        if not tool.is_file():
            raise RuntimeError(
                f"{tool} not found: install mariadb-server (scripts/install-system-deps)"
            )
    directory = Path(tempfile.mkdtemp(prefix="syncd-mariadb-", dir="/tmp"))
    directory.chmod(0o755)
    for source, name in (
        (certificate.cert_file, "server.pem"),
        (certificate.key_file, "server.key"),
    ):
        shutil.copyfile(source, directory / name)
    as_mysql = ["runuser", "-u", "mysql", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "mysql:mysql", str(directory)], check=True)
    data = directory / "data"
    installed = subprocess.run(
        [*as_mysql, str(MARIADB_INSTALL), "--no-defaults", f"--datadir={data}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if installed.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed:\n{installed.stdout}{installed.stderr}")
    server = TlsMariaDB(directory, free_port())
    subprocess.Popen(
        [*as_mysql, str(MARIADB_BIN), "--no-defaults", f"--datadir={data}",
         f"--port={server.port}", f"--bind-address={LOCALHOST}", f"--socket={server.socket}",
         f"--pid-file={directory / 'mariadbd.pid'}", f"--log-error={directory / 'error.log'}",
         "--skip-log-bin", "--innodb-buffer-pool-size=16M",
         f"--ssl-cert={directory / 'server.pem'}", f"--ssl-key={directory / 'server.key'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    def ready() -> bool:
        return "ready for connections" in _text(directory / "error.log")

    try:
        wait_until(ready, 60, what="the TLS MariaDB to accept connections")
    except AssertionError as error:
        raise RuntimeError(f"{error}\n{log_tail(directory / 'error.log')}") from None
    return server


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""
