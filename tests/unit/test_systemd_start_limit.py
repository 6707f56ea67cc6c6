"""A burst of crashes must never leave the unit failed for good: the start limit is out of reach
of the restarts that Restart= itself makes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def _seconds(unit: str, setting: str) -> float:
    match = re.search(rf"^{setting}=(\d+(?:\.\d+)?)(ms|s|min)?$", unit, re.MULTILINE)
    assert match, f"{setting}= is missing"
    value, unit_name = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "min": 60}[unit_name]


@pytest.mark.parametrize("name", ["syncd.service", "syncd@.service", "syncd-worker@.service"])
def test_a_crash_loop_cannot_reach_the_start_limit(name: str) -> None:
    unit = (UNITS / name).read_text()
    unit_section = unit.split("[Service]")[0]
    assert "StartLimitIntervalSec=" in unit_section and "StartLimitBurst=" in unit_section
    interval_s = _seconds(unit, "StartLimitIntervalSec")
    burst = int(re.search(r"^StartLimitBurst=(\d+)$", unit, re.MULTILINE).group(1))  # type: ignore[union-attr]
    restart_s = _seconds(unit, "RestartSec")
    # Restarts come at least RestartSec apart: that many fit in one interval, plus the first.
    assert burst > interval_s / restart_s + 1
