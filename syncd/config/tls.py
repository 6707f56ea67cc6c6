"""``broker.tls``: the files that secure the broker link, checked when the config is loaded.

Absent, syncd speaks plain STOMP over TCP; present, it speaks TLS to every host in
``broker.hosts`` and always verifies the broker's certificate and host name — there is no
setting that turns verification off, so a typo cannot silently do so. The files are read here,
at ``syncd check`` time, with the same ``ssl`` calls that connecting makes: a wrong path, an
unreadable key, a certificate that does not match its key or a key with a passphrase is a
configuration error with its line, not a failure at the first connection of the night.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from syncd.config.reader import Reader, nonempty_text
from syncd.config.yamlfile import Node

TLS_KEYS = ("ca_file", "cert_file", "key_file")
_EXAMPLE = (
    "tls: {ca_file: /etc/syncd/tls/ca.pem, cert_file: /etc/syncd/tls/syncd.pem, "
    "key_file: ${CREDENTIALS_DIRECTORY}/syncd-tls-key}"
)


@dataclass(frozen=True)
class TlsConfig:
    """Where the TLS files are; all absolute. The key's path is no secret, its content is."""

    ca_file: Path | None  # the CA(s) that signed the broker's certificate; None: the system's
    cert_file: Path | None  # client certificate (PEM), for brokers that require one
    key_file: Path | None  # its private key (PEM, no passphrase); set exactly when cert_file is


def read_tls(r: Reader, broker: dict[str, Node]) -> TlsConfig | None:
    """``broker.tls`` checked, or None when absent (plain TCP)."""
    node = broker.get("tls")
    if node is None or node.value is None:
        return None
    entries = node.mapping
    if entries is None:
        r.problem(
            node.line, "broker.tls", f"expected a mapping like {_EXAMPLE}, found {node.describe()}"
        )
        return None
    r.check_keys(entries, "broker.tls", TLS_KEYS)
    given = [key for key in ("cert_file", "key_file") if key in entries]
    if len(given) == 1:
        missing = "key_file" if given == ["cert_file"] else "cert_file"
        r.problem(
            r.line_of(entries, given[0]),
            "broker.tls",
            f"{given[0]} is set but {missing} is not; a client certificate needs both "
            "(or neither, for a broker that does not ask for one)",
        )
        return None
    files = {key: _file(r, entries, key) for key in TLS_KEYS}
    if any(key in entries and files[key] is None for key in TLS_KEYS):
        return None  # reported; connecting without the file would be plain wrong
    tls = TlsConfig(**files)
    _load(r, entries, tls)
    return tls


def _file(r: Reader, entries: dict[str, Node], key: str) -> Path | None:
    text = r.scalar(entries, "broker.tls", key, nonempty_text, None)
    if text is None:
        return None
    path = r.base_dir / Path(text).expanduser()
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        r.problem(r.line_of(entries, key), f"broker.tls.{key}", f"cannot read {path}: {reason}")
        return None
    return path


def _load(r: Reader, entries: dict[str, Node], tls: TlsConfig) -> None:
    """Load the files as connecting will, so that what fails there fails here, with a line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except ssl.SSLError as exc:
            r.problem(
                r.line_of(entries, "ca_file"),
                "broker.tls.ca_file",
                f"{tls.ca_file} holds no PEM certificate ({exc.reason or exc}); "
                "write the path of the CA certificate in PEM form",
            )
    if tls.cert_file is None or tls.key_file is None:
        return
    asked: list[bool] = []

    def no_passphrase() -> str:
        asked.append(True)
        return ""

    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=no_passphrase)
    except ssl.SSLError as exc:
        if asked:
            reason = (
                "is protected by a passphrase, which syncd cannot enter; store it without "
                "one (openssl pkey -in KEY -out KEY.plain) and protect the file instead "
                "(mode 0600, or systemd's LoadCredential=)"
            )
        else:
            reason = (
                f"and {tls.cert_file} do not load as a PEM key and its certificate "
                f"({exc.reason or exc}); check that the key belongs to the certificate"
            )
        r.problem(r.line_of(entries, "key_file"), "broker.tls.key_file", f"{tls.key_file} {reason}")
