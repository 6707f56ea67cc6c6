"""A broker as production runs it (activemq/conf/activemq-production.xml): STOMP over TLS only,
client certificates required, no anonymous logins, rights per queue.

:func:`start_secure_broker` makes a throwaway CA, the broker's certificate and PKCS12 stores and
the users' client certificates (tests/pki.py), lays out the broker's own conf directory (the
repository's production file linked in, the stores and credentials.properties beside it) and
starts it with ``activemq/syncd-broker``. The broker's certificate names ``localhost`` only, so
syncd reaches it as ``localhost:PORT``; ``127.0.0.1:PORT`` is the same broker under a name the
certificate does not carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.pki import Authority, Issued, keystore, truststore
from tests.services import REPO, Broker

PRODUCTION_CONFIG = "activemq-production.xml"
# Users of the production file and their passwords: distinctive, so a leak would be found.
PASSWORDS = {"syncd": "syncd-Secret-7f3a", "crm": "crm-Secret-91bd"}
_STORE_PASSWORDS = {"keystore": "keystore-Secret-55e0", "truststore": "truststore-Secret-c4a2"}


@dataclass(frozen=True)
class SecureBroker:
    broker: Broker
    ca: Path  # the CA that signed the broker's and the users' certificates
    stranger_ca: Path  # a CA that signed nothing the broker holds
    clients: dict[str, Issued]  # per user, signed by ``ca``
    stranger_client: Issued  # signed by the stranger CA: the broker does not trust it
    secrets: Path  # the users' password files: secrets/USER

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def address(self) -> str:
        """``host:port`` by the name in the broker's certificate."""
        return f"localhost:{self.broker.port}"

    def password_file(self, user: str) -> Path:
        return self.secrets / user

    def broker_yaml(
        self,
        user: str | None,
        *,
        host: str = "localhost",
        ca: Path | None = None,
        client: Issued | None = None,
        password_file: Path | None = None,
        extra: str = "",
    ) -> str:
        """config.yaml's ``broker:`` section for ``user`` (None: no login) over TLS."""
        client = client if client is not None else self.clients.get(user or "", None)
        lines = [
            "broker:",
            f'  hosts: ["{host}:{self.broker.port}"]',
            "  heartbeat_ms: 2000",
            "  tls:",
            f"    ca_file: {ca or self.ca}",
        ]
        if client is not None:
            lines += [f"    cert_file: {client.cert}", f"    key_file: {client.key}"]
        if user is not None:
            lines += [
                f"  user: {user}",
                f"  password_file: {password_file or self.password_file(user)}",
            ]
        return "\n".join(lines) + "\n" + extra


def start_secure_broker(workdir: Path, plain_port: int | None = None) -> SecureBroker:
    """The production broker; ``plain_port`` adds a plain STOMP connector on 127.0.0.1 (logins
    and rights still apply), to compare TLS with plain TCP on the same broker (bench/tls.py)."""
    pki = workdir / "pki"
    authority = Authority(pki, "syncd-test-ca")
    stranger = Authority(pki / "stranger", "stranger-ca")
    broker_cert = authority.issue("broker", server_names=("DNS:localhost",))
    clients = {user: authority.issue(user) for user in PASSWORDS}
    conf = workdir / "broker" / "conf"
    (conf / "tls").mkdir(parents=True)
    keystore(broker_cert, authority, conf / "tls" / "broker.p12", _STORE_PASSWORDS["keystore"])
    truststore(authority, conf / "tls" / "truststore.p12", _STORE_PASSWORDS["truststore"])
    for name in (PRODUCTION_CONFIG, "log4j.properties", "log4j2.properties"):
        (conf / name).symlink_to(REPO / "activemq" / "conf" / name)
    if plain_port is not None:
        (conf / PRODUCTION_CONFIG).unlink()
        xml = (REPO / "activemq" / "conf" / PRODUCTION_CONFIG).read_text()
        plain = (
            f'<transportConnector name="stomp" uri="stomp://127.0.0.1:{plain_port}'
            '?transport.hbGracePeriodMultiplier=2.0&amp;transport.tcpNoDelay=true"/>\n'
        )
        xml = xml.replace("</transportConnectors>", plain + "        </transportConnectors>")
        (conf / PRODUCTION_CONFIG).write_text(xml)
    credentials = conf / "credentials.properties"
    credentials.write_text(
        f"syncd.tls.keystore.password={_STORE_PASSWORDS['keystore']}\n"
        f"syncd.tls.truststore.password={_STORE_PASSWORDS['truststore']}\n"
        + "".join(f"{user}.password={password}\n" for user, password in PASSWORDS.items())
    )
    credentials.chmod(0o600)
    secrets = workdir / "secrets"
    secrets.mkdir()
    for user, password in PASSWORDS.items():
        (secrets / user).write_text(password + "\n")
    broker = Broker.start(workdir / "broker", config_file=PRODUCTION_CONFIG)
    return SecureBroker(
        broker=broker,
        ca=authority.cert,
        stranger_ca=stranger.cert,
        clients=clients,
        stranger_client=stranger.issue("stranger"),
        secrets=secrets,
    )
