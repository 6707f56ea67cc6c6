"""SIGHUP's reload, against the in-memory broker: a connection lost while resubscribing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from syncd.broker.memory import InMemoryBroker
from syncd.config import load_config
from syncd.daemon.reload import Reloader
from syncd.daemon.targets import build_appliers
from syncd.errors import BrokerUnavailable
from syncd.events import ChangeEvent
from syncd.mapping import load_mappings

MAPPING = """mappings:
  - name: customers
    source: {{system: {system}, table: customers}}
    target: {{database: warehouse, table: customers}}
    key: [id]
"""


class _DroppingBroker(InMemoryBroker):
    """Loses its connection on the first subscription change, as a broker restart would."""

    def subscribe(self, destination: str) -> None:
        super().subscribe(destination)
        if self.connected:
            self.drop_connection()
            raise BrokerUnavailable(f"cannot subscribe to {destination}: connection lost")


class _Loop:
    def __init__(self) -> None:
        self.swapped: list[Any] = []

    def swap(self, router: Any, appliers: Any, settings: Any) -> None:
        self.swapped.append(router)


class _Progress:
    def status(self, text: str) -> None:
        pass


def _reloader(tmp_path: Path, broker: InMemoryBroker) -> tuple[Reloader, threading.Event]:
    """A Reloader over a SQLite target with one mapping (source system crm)."""
    sa.create_engine(f"sqlite:///{tmp_path / 't.db'}").connect().exec_driver_sql(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, country TEXT)"
    ).close()
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "m.yaml").write_text(MAPPING.format(system="crm"))
    (tmp_path / "config.yaml").write_text(
        "databases:\n  warehouse: {url: 'sqlite:///t.db'}\nmappings: mappings/\n"
    )
    config = load_config(tmp_path / "config.yaml")
    appliers = build_appliers(config, load_mappings(config.mappings_dir, ["warehouse"]))
    broker.subscribe("/queue/syncd.crm")
    requested = threading.Event()
    reloader = Reloader(config, appliers, broker, _Progress(), requested)  # type: ignore[arg-type]
    return reloader, requested


def test_a_reload_that_loses_the_connection_while_resubscribing_keeps_the_daemon(
    tmp_path: Path,
) -> None:
    broker = _DroppingBroker()
    reloader, requested = _reloader(tmp_path, broker)
    broker.connect()
    # The mapping moves to another source system: subscribe to erp, unsubscribe from crm.
    (tmp_path / "mappings" / "m.yaml").write_text(MAPPING.format(system="erp"))
    requested.set()
    loop = _Loop()
    reloader(loop)  # type: ignore[arg-type]
    assert len(loop.swapped) == 1
    # Both changes are recorded; the loop's reconnect subscribes to exactly these.
    assert broker.destinations == ["/queue/syncd.erp"]
    assert not broker.connected
    for applier in reloader.appliers.values():
        applier.close()


def test_a_reload_swaps_in_a_changed_filter(tmp_path: Path) -> None:
    reloader, requested = _reloader(tmp_path, InMemoryBroker())
    filtered = MAPPING.format(system="crm") + "    where: \"country = 'DE'\"\n"
    (tmp_path / "mappings" / "m.yaml").write_text(filtered)
    requested.set()
    loop = _Loop()
    reloader(loop)  # type: ignore[arg-type]
    [router] = loop.swapped
    event = ChangeEvent(
        "c", None, {"id": 1, "country": "US"}, "crm", None, "customers", 1, "e", None, None
    )
    [change] = router.changes_for(event)
    assert change.delete  # the new filter keeps the row out
    for applier in reloader.appliers.values():
        applier.close()
