"""``python -m bench.tls [--events N] [--connects N] [--rounds N]``: TLS against plain TCP.

One broker as production runs it (activemq-production.xml: logins, rights, a TLS connector
that requires client certificates; tests/secure_broker.py) with one more, plain STOMP
connector, so that both links meet the same broker, the same logins and the same rights; one
throwaway PostgreSQL. Measures, alternating TLS and plain in one run:

1. connect time: ``connect_first`` (TCP, TLS handshake with client certificate, STOMP CONNECT
   with a login, CONNECTED), then DISCONNECT; the median of ``--connects`` of each;
2. apply throughput: ``syncd run`` draining ``--events`` pre-loaded single-event messages into
   PostgreSQL (``bench.daemon_phases.drain``), ``--rounds`` of each, fresh queue and target
   each round; the target is checked row by row.

Not a test: nothing passes or fails on speed. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.daemon_phases import drain
from bench.target import compare_rows, create_target
from bench.workload import customer_history, mappings_yaml
from syncd.broker.connection import Listener, connect_first, quietly_disconnect
from syncd.config import BrokerConfig, load_config
from syncd.publisher import Publisher
from tests.harness import Daemon
from tests.secure_broker import SecureBroker, start_secure_broker
from tests.services import PostgresCluster, free_port

MAPPING = "customers"  # bench.workload's mapping


def _config(directory: Path, broker: str, url: str, system: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mappings").mkdir(exist_ok=True)
    (directory / "mappings" / "bench.yaml").write_text(mappings_yaml(system))
    config = directory / "config.yaml"
    config.write_text(broker + f'databases:\n  warehouse: {{url: "{url}"}}\nmappings: mappings/\n')
    return config


def _broker_sections(secure: SecureBroker, plain_port: int) -> dict[str, str]:
    tls = secure.broker_yaml("syncd")
    plain = "\n".join(
        line.replace(f"localhost:{secure.port}", f"127.0.0.1:{plain_port}")
        for line in tls.splitlines()
        if not line.startswith("    ") and line != "  tls:"
    )
    return {"tls": tls, "plain": plain + "\n"}


def connect_times(configs: dict[str, BrokerConfig], count: int) -> dict[str, float]:
    """Median seconds of one connect + disconnect, per link, alternating."""
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(count):
        for name, config in configs.items():
            started = time.perf_counter()
            conn, _listener, _where = connect_first(config, Listener, "bench", heartbeats=False)
            times[name].append(time.perf_counter() - started)
            quietly_disconnect(conn)
    return {name: statistics.median(values) for name, values in times.items()}


def apply_rate(
    workdir: Path, cluster: PostgresCluster, broker: str, name: str, events: int, round_: int
) -> float:
    system = f"bench{name}{round_}"
    url = create_target(cluster, f"bench_{name}_{round_}")
    config = _config(workdir / f"{name}-{round_}", broker, url, system)
    history = customer_history(system, events)
    loaded = load_config(config)
    # Pre-loaded through the plain link: the TLS round measures applying, not loading.
    with Publisher(dataclasses.replace(loaded, broker=_plain_of(loaded.broker))) as publisher:
        publisher.publish(history.events)
    engine = sa.create_engine(url)
    daemon = Daemon(config)
    try:
        drained = drain(daemon, engine, MAPPING, events, 900, {})
    finally:
        daemon.stop()
    mismatch = compare_rows(engine, history.expected())
    engine.dispose()
    if mismatch.wrong_rows:
        raise RuntimeError(f"{name} round {round_}: the target is wrong: {mismatch}")
    return drained.rate


_PLAIN: dict[str, BrokerConfig] = {}


def _plain_of(config: BrokerConfig) -> BrokerConfig:
    return _PLAIN["plain"] if config.tls is not None else config


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--connects", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncd-bench-tls-") as directory:
        workdir = Path(directory)
        workdir.chmod(0o755)
        plain_port = free_port()
        secure = start_secure_broker(workdir / "secure", plain_port=plain_port)
        cluster = PostgresCluster.start(workdir / "postgres")
        try:
            sections = _broker_sections(secure, plain_port)
            configs = {
                name: load_config(_config(workdir / f"connect-{name}", section, "sqlite://", "x"))
                for name, section in sections.items()
            }
            brokers = {name: config.broker for name, config in configs.items()}
            _PLAIN["plain"] = brokers["plain"]
            connect_first(brokers["tls"], Listener, "warm-up", heartbeats=False)
            medians = connect_times(brokers, args.connects)
            for name, median in medians.items():
                print(f"connect {name:5}: median {median * 1000:.2f} ms of {args.connects}")
            rates: dict[str, list[float]] = {name: [] for name in sections}
            for round_ in range(1, args.rounds + 1):
                for name, section in sections.items():
                    rate = apply_rate(workdir, cluster, section, name, args.events, round_)
                    rates[name].append(rate)
                    print(f"apply {name:5} round {round_}: {rate:,.0f} events/s", flush=True)
            for name, values in rates.items():
                print(f"apply {name:5}: median {statistics.median(values):,.0f} events/s")
        finally:
            cluster.destroy()
            secure.broker.close()


if __name__ == "__main__":
    main()
