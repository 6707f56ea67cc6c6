"""``broker.tls`` in config.yaml: files checked when the config loads, verification not optional."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config import TlsConfig
from tests.pki import Authority, Issued
from tests.unit.test_config import MINIMAL, load, problems


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Authority, Issued, Issued]]:
    authority = Authority(tmp_path_factory.mktemp("pki"), "unit-ca")
    yield authority, authority.issue("syncd"), authority.issue("other")


def tls_config(ca: Path | str, cert: Path | str, key: Path | str) -> str:
    return (
        MINIMAL
        + f"broker:\n  tls:\n    ca_file: {ca}\n    cert_file: {cert}\n    key_file: {key}\n"
    )


def test_without_tls_the_broker_link_is_plain_tcp(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).broker.tls is None


def test_tls_files_are_read_and_kept_absolute(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, client, _ = pki
    config = load(tmp_path, tls_config(authority.cert, client.cert, client.key))

    assert config.broker.tls == TlsConfig(authority.cert, client.cert, client.key)


def test_tls_without_a_ca_file_trusts_the_system_cas(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "broker:\n  tls: {}\n")

    assert config.broker.tls == TlsConfig(None, None, None)


def test_relative_paths_and_credentials_directory_expand(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, client, _ = pki
    (tmp_path / "ca.pem").write_bytes(authority.cert.read_bytes())
    text = tls_config("ca.pem", client.cert, "${CREDENTIALS_DIRECTORY}/" + client.key.name)

    config = load(tmp_path, text, {"CREDENTIALS_DIRECTORY": str(client.key.parent)})

    assert config.broker.tls == TlsConfig(tmp_path / "ca.pem", client.cert, client.key)


def test_a_missing_file_is_named_with_its_line(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, client, _ = pki

    found = problems(tmp_path, tls_config(authority.cert, client.cert, "/nonexistent/key.pem"))

    assert found == [
        "config.yaml:7: broker.tls.key_file: cannot read /nonexistent/key.pem: "
        "No such file or directory"
    ]


def test_an_unset_credentials_directory_is_reported(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, client, _ = pki

    found = problems(
        tmp_path, tls_config(authority.cert, client.cert, "${CREDENTIALS_DIRECTORY}/k")
    )

    assert found == [
        "config.yaml:7: broker.tls.key_file: environment variable CREDENTIALS_DIRECTORY is not "
        "set; set it or write ${CREDENTIALS_DIRECTORY:-default}"
    ]


def test_a_directory_is_not_a_readable_file(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + f"broker:\n  tls: {{ca_file: {tmp_path}}}\n")

    assert found == [f"config.yaml:4: broker.tls.ca_file: cannot read {tmp_path}: Is a directory"]


@pytest.mark.parametrize("given", ["cert_file", "key_file"])
def test_a_client_certificate_needs_both_files(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued], given: str
) -> None:
    _, client, _ = pki
    path = client.cert if given == "cert_file" else client.key

    found = problems(tmp_path, MINIMAL + f"broker:\n  tls:\n    {given}: {path}\n")

    missing = "key_file" if given == "cert_file" else "cert_file"
    assert found == [
        f"config.yaml:5: broker.tls: {given} is set but {missing} is not; a client certificate "
        "needs both (or neither, for a broker that does not ask for one)"
    ]


@pytest.mark.parametrize("setting", ["verify: false", "insecure: true", "check_hostname: false"])
def test_verification_cannot_be_turned_off(tmp_path: Path, setting: str) -> None:
    found = problems(tmp_path, MINIMAL + f"broker:\n  tls:\n    {setting}\n")

    assert len(found) == 1
    assert found[0].startswith(f"config.yaml:5: broker.tls.{setting.split(':')[0]}: unknown key")
    assert "(allowed: ca_file, cert_file, key_file)" in found[0]


def test_tls_must_be_a_mapping(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  tls: yes\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:4: broker.tls: expected a mapping like tls: {ca_file:")


def test_a_ca_file_that_is_not_pem_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")

    found = problems(tmp_path, MINIMAL + "broker:\n  tls: {ca_file: ca.pem}\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:4: broker.tls.ca_file: ca.pem holds no PEM")


def test_a_key_of_another_certificate_is_reported(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, client, other = pki

    found = problems(tmp_path, tls_config(authority.cert, client.cert, other.key))

    assert len(found) == 1
    assert found[0].startswith(f"config.yaml:7: broker.tls.key_file: {other.key} and {client.cert}")
    assert "check that the key belongs to the certificate" in found[0]


def test_a_key_with_a_passphrase_is_reported(
    tmp_path: Path, pki: tuple[Authority, Issued, Issued]
) -> None:
    authority, client, _ = pki
    locked = tmp_path / "locked.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(client.key), "-out", str(locked), "-aes256",
         "-passout", "pass:unit-passphrase"],
        check=True,
    )  # fmt: skip

    found = problems(tmp_path, tls_config(authority.cert, client.cert, locked))

    assert len(found) == 1
    assert "is protected by a passphrase, which syncd cannot enter" in found[0]
    assert "unit-passphrase" not in found[0]
