"""What syncd hands stomp.py's ``set_ssl``: verification on, and a check that it happened."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace

import stomp

from syncd.broker import tls
from syncd.config import TlsConfig

CONFIG = TlsConfig(Path("/etc/syncd/ca.pem"), Path("/etc/syncd/c.pem"), Path("/run/k"))


def settings_of(conn: stomp.Connection12) -> dict[str, object]:
    params: dict[str, object] = conn.transport.get_ssl(("mq1", 61614))
    return params


def test_stomp_py_gets_verification_on_and_the_configured_files() -> None:
    conn = stomp.Connection12([("mq1", 61614)])

    tls.use_tls(conn, "mq1", 61614, CONFIG)

    params = settings_of(conn)
    assert params["verify"] is True
    assert params["ssl_version"] == ssl.PROTOCOL_TLS_CLIENT  # check_hostname, CERT_REQUIRED
    assert (params["ca_certs"], params["cert_file"], params["key_file"]) == (
        "/etc/syncd/ca.pem",
        "/etc/syncd/c.pem",
        "/run/k",
    )


def test_without_a_ca_file_stomp_py_uses_the_system_cas() -> None:
    conn = stomp.Connection12([("mq1", 61614)])

    tls.use_tls(conn, "mq1", 61614, TlsConfig(None, None, None))

    assert settings_of(conn)["ca_certs"] is None  # stomp.py then calls load_default_certs()


def test_a_socket_that_did_not_verify_is_refused_before_connect_sends_the_password() -> None:
    conn = stomp.Connection12([("mq1", 61614)])
    tls.use_tls(conn, "mq1", 61614, CONFIG)
    validate = settings_of(conn)["cert_validator"]
    assert callable(validate)

    def with_context(verify_mode: ssl.VerifyMode, check_hostname: bool) -> tuple[bool, str]:
        context = SimpleNamespace(verify_mode=verify_mode, check_hostname=check_hostname)
        conn.transport.socket = SimpleNamespace(context=context)
        result: tuple[bool, str] = validate({}, "mq1")
        return result

    assert with_context(ssl.CERT_REQUIRED, True) == (True, "")
    assert with_context(ssl.CERT_REQUIRED, False)[0] is False
    assert with_context(ssl.CERT_NONE, False)[0] is False
    assert with_context(ssl.CERT_OPTIONAL, True)[0] is False


def test_a_verification_failure_says_what_to_do() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code, error.verify_message = 20, "unable to get local issuer certificate"

    text = tls.describe(error, CONFIG)

    assert text.startswith("certificate verify failed: unable to get local issuer certificate (")
    assert "broker.tls.ca_file" in text


def test_a_plain_port_answering_tls_is_named() -> None:
    error = ssl.SSLError(1, "wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"

    assert "does not speak TLS on this port" in tls.describe(error, CONFIG)
