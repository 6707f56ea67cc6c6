"""Database TLS settings in a URL's query: checked at load, refused settings said plainly.

The TLS connections themselves are proven against a real server in
tests/integration/test_database_tls.py; these need no server.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa

from syncd.apply.sql import SqlApplier
from syncd.config import load_config
from syncd.errors import ConfigError, PermanentApplyError
from tests.database_tls import make_authority


def problems_of(tmp_path: Path, url: str) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"databases:\n  w: {{url: '{url}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, {})
    return [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems]


@pytest.mark.parametrize("setting", ["ssl_verify_identity=true", "ssl_verify_cert=true"])
def test_pymysql_verify_keywords_that_would_drop_the_ca_are_refused(
    tmp_path: Path, setting: str
) -> None:
    url = f"mysql+pymysql://syncd@db/w?ssl_ca=/etc/syncd/tls/ca.pem&{setting}"
    name = setting.split("=")[0]
    assert problems_of(tmp_path, url) == [
        f"config.yaml:2: databases.w.url: {name} would make PyMySQL ignore ssl_ca and check no "
        "host name; remove it: ssl_ca=/etc/syncd/tls/ca.pem alone verifies the certificate and "
        "the host name"
    ]


def test_postgresql_tls_settings_load_as_written(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    url = "postgresql+psycopg2://syncd@db/w?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    config.write_text(f"databases:\n  w: {{url: '{url}'}}\n")
    assert load_config(config, {}).databases["w"].display_url == url


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("ssl_caa=/etc/ca.pem", "the URL's settings are not PyMySQL's: "),
        ("ssl_ca=/nonexistent/ca.pem", "the TLS files in the URL (ssl_ca, ssl_cert, ssl_key) "),
    ],
)
def test_pymysql_refusing_the_urls_settings_is_a_permanent_error(query: str, said: str) -> None:
    """PyMySQL says so with TypeError or OSError before connecting: not a traceback, not an
    outage to wait for, but the URL to fix (syncd check and run exit 2)."""
    applier = SqlApplier("w", f"mysql+pymysql://syncd:pw@127.0.0.1:9/w?{query}", [], "p")
    try:
        with pytest.raises(PermanentApplyError, match=r"^database w: ") as caught:
            applier.prepare(create=False)
    finally:
        applier.close()
    assert said in str(caught.value)


def pymysql_context(url: str) -> ssl.SSLContext:
    """The SSLContext PyMySQL would connect with, for a URL as SQLAlchemy hands it over."""
    engine = sa.create_engine(url)
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    connection = pymysql.connections.Connection(*cargs, defer_connect=True, **cparams)
    context: ssl.SSLContext = connection.ctx
    return context


def trusts(context: ssl.SSLContext, authority: str) -> bool:
    return any(
        dict(entry[0] for entry in cert["subject"]).get("commonName") == authority
        for cert in context.get_ca_certs()
    )


def test_ssl_ca_alone_verifies_the_certificate_and_the_host_name(tmp_path: Path) -> None:
    """What README promises for ``?ssl_ca=…``, and why syncd refuses ``ssl_verify_identity``:
    measured on PyMySQL's own SSLContext."""
    authority = make_authority(tmp_path, "db-ca")
    url = f"mysql+pymysql://syncd:pw@db/w?ssl_ca={authority.cert_file}"

    alone = pymysql_context(url)
    assert alone.verify_mode == ssl.CERT_REQUIRED and alone.check_hostname
    assert trusts(alone, "db-ca")

    overridden = pymysql_context(url + "&ssl_verify_identity=true")
    assert not overridden.check_hostname and not trusts(overridden, "db-ca")
