"""A throwaway certificate authority (openssl) and a PostgreSQL cluster that requires TLS and
passwords for some of its roles: what the secrets and database-TLS tests connect to.

The cluster is a second one (``secure_postgres`` in tests/conftest.py), started only by the
tests that ask for it, so the main cluster's start stays as fast as it was.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

from tests.services import LOCALHOST, PostgresCluster, ServerCertificate

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


def start_secure_postgres(workdir: Path) -> SecurePostgres:
    pki = workdir / "pki"
    authority = make_authority(pki, "syncd-test-ca")
    stranger = make_authority(pki, "stranger-ca")
    certificate = make_server_certificate(pki, authority)
    cluster = PostgresCluster.start(workdir / "postgres", tls=certificate, hba=HBA)
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
    return SecurePostgres(cluster, authority, stranger)
