"""TLS on a broker connection: stomp.py's ``set_ssl``, held to verification, and its failures
said in words.

stomp.py 9 wraps the socket itself, in an ``ssl.SSLContext(PROTOCOL_TLS_CLIENT)``: certificate
*and* host name checked (``check_hostname``, ``CERT_REQUIRED``) against ``ca_certs`` or, without
one, the system's CAs. syncd never passes ``verify=False``, and a validator checks, on the
wrapped socket and before CONNECT sends the password, that the context really verified — so a
change of stomp.py's defaults could not quietly turn verification off.

When the handshake fails, stomp.py only logs why and raises a bare ``ConnectFailedException``;
:func:`handshake_failure` does the same handshake again to learn the reason.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from syncd.config.tls import TlsConfig

_UNTRUSTED = (
    "the broker's certificate is not signed by a CA syncd trusts: broker.tls.ca_file (or, "
    "without it, the system's CAs) does not hold the CA that signed it"
)
# OpenSSL's X509_V_ERR_* codes for the failures a sysadmin meets, and what to do about them.
_VERIFY_HINTS = {
    10: "the broker's certificate has expired; renew it",
    18: "the broker's certificate is self-signed; put the CA that signs it in broker.tls.ca_file",
    19: _UNTRUSTED,
    20: _UNTRUSTED,
    62: "the broker's certificate is not issued for this host name; connect by a name in its "
    "subjectAltName, or issue it for this one",
    64: "the broker's certificate is not issued for this address; connect by a name or "
    "address in its subjectAltName, or issue it for this one",
}


def use_tls(conn: Any, host: str, port: int, config: TlsConfig) -> None:
    """Make ``conn`` speak TLS to ``host:port``, verifying certificate and host name."""

    def verified(_cert: Any, _host: str) -> tuple[bool, str]:
        context = conn.transport.socket.context
        if context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname:
            return True, ""
        return False, "stomp.py did not verify the certificate and host name; not connecting"

    conn.set_ssl(
        for_hosts=[(host, port)],
        ca_certs=str(config.ca_file) if config.ca_file else None,  # None: the system's CAs
        cert_file=str(config.cert_file) if config.cert_file else None,
        key_file=str(config.key_file) if config.key_file else None,
        ssl_version=ssl.PROTOCOL_TLS_CLIENT,
        verify=True,
        cert_validator=verified,
    )


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """The context stomp.py builds from the same settings."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    else:
        context.load_default_certs()
    if config.cert_file is not None and config.key_file is not None:
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
    return context


def handshake_failure(host: str, port: int, config: TlsConfig, timeout_s: float) -> str | None:
    """Why a TLS handshake with ``host:port`` fails; None if it succeeds or TCP itself fails."""
    try:
        context = client_context(config)
        with (
            socket.create_connection((host, port), timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLError as exc:
        return describe(exc, config)
    except OSError:
        return None  # not a TLS matter: the caller says it cannot connect


def describe(error: ssl.SSLError, config: TlsConfig) -> str:
    """One line for a TLS failure: OpenSSL's words and, where known, what to do."""
    if isinstance(error, ssl.SSLCertVerificationError):
        words = f"certificate verify failed: {error.verify_message}"
        hint = _VERIFY_HINTS.get(error.verify_code)
        return f"{words} ({hint})" if hint else words
    reason = str(error.reason or error)
    if "ALERT" in reason and "CERTIFICATE" in reason:
        # The broker's verdict on syncd's own certificate (needClientAuth).
        if config.cert_file is None:
            return (
                f"the broker requires a client certificate ({reason}); set broker.tls.cert_file "
                "and key_file to one signed by a CA in the broker's trust store"
            )
        return (
            f"the broker did not accept syncd's client certificate ({reason}); check "
            "broker.tls.cert_file and key_file, and that the broker's trust store holds "
            "the CA that signed it"
        )
    if reason == "WRONG_VERSION_NUMBER":
        return f"{reason}: the broker does not speak TLS on this port (is it a plain STOMP port?)"
    return reason
