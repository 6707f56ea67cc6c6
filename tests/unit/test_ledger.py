from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.pipeline.ledger import DeliveryLedger


def test_starts_survive_a_restart_and_end_forgets_them(tmp_path: Path) -> None:
    ledger = DeliveryLedger(tmp_path / "state" / "deliveries.db")
    ledger.begin(["a", "b"])
    ledger.begin(["a"])
    ledger.close()  # the daemon died: the counts must still be there
    again = DeliveryLedger(tmp_path / "state" / "deliveries.db")
    assert again.starts(["a", "b", "c"]) == {"a": 2, "b": 1}
    again.end(["a"])
    assert again.starts(["a", "b"]) == {"b": 1}


def test_an_unusable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="state_dir: cannot keep the delivery ledger"):
        DeliveryLedger(blocker / "deliveries.db")
