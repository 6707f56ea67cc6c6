"""A throwaway certificate authority for the TLS tests, made the way README.md's "Securing the
broker" tells a sysadmin to: keys and certificates with openssl, the broker's PKCS12 stores
with keytool.

EC P-256 keys: made in milliseconds, and every TLS 1.3 stack (Python's, Java 17's) takes them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"  # outlives any test session; a leaked test key is worthless soon after


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class Issued:
    """A certificate and its unencrypted key, both PEM."""

    cert: Path
    key: Path


class Authority:
    """A CA in ``directory`` that issues server and client certificates."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        self.cert = directory / f"{name}.pem"
        self.key = directory / f"{name}.key"
        _run(
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", DAYS,
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )  # fmt: skip

    def issue(self, name: str, *, server_names: tuple[str, ...] = ()) -> Issued:
        """A certificate for ``name``: a server's with ``server_names`` as its subjectAltName
        (``DNS:localhost``, ``IP:127.0.0.1``), else a client's."""
        key, csr, cert = (self.dir / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        _run(
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
            cwd=self.dir,
        )  # fmt: skip
        usage = "serverAuth" if server_names else "clientAuth"
        extensions = self.dir / f"{name}.ext"
        lines = [f"extendedKeyUsage={usage}", "basicConstraints=CA:FALSE"]
        if server_names:
            lines.append("subjectAltName=" + ",".join(server_names))
        extensions.write_text("\n".join(lines) + "\n")
        _run(
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert),
            "-CAkey", str(self.key), "-CAcreateserial", "-out", str(cert), "-days", DAYS,
            "-extfile", str(extensions),
            cwd=self.dir,
        )  # fmt: skip
        return Issued(cert, key)


def keystore(issued: Issued, authority: Authority, store: Path, password: str) -> Path:
    """The broker's PKCS12 key store: its key, certificate and the CA, as keytool writes it."""
    staging = store.with_suffix(".openssl.p12")
    _run(
        "openssl", "pkcs12", "-export", "-in", str(issued.cert), "-inkey", str(issued.key),
        "-certfile", str(authority.cert), "-name", "broker", "-out", str(staging),
        "-passout", f"pass:{password}",
        cwd=store.parent,
    )  # fmt: skip
    # keytool re-writes it the way Java reads best (and is what ActiveMQ's docs use).
    _run(
        "keytool", "-importkeystore", "-noprompt",
        "-srckeystore", str(staging), "-srcstoretype", "pkcs12", "-srcstorepass", password,
        "-destkeystore", str(store), "-deststoretype", "pkcs12", "-deststorepass", password,
        cwd=store.parent,
    )  # fmt: skip
    staging.unlink()
    return store


def truststore(authority: Authority, store: Path, password: str) -> Path:
    """A PKCS12 trust store holding the CA whose client certificates the broker accepts."""
    _run(
        "keytool", "-importcert", "-noprompt", "-alias", authority.name,
        "-file", str(authority.cert), "-keystore", str(store), "-storetype", "pkcs12",
        "-storepass", password,
        cwd=store.parent,
    )  # fmt: skip
    return store
