"""The shipped unit files pass `systemd-analyze verify`, rate 1.2 or lower for exposure, and hand
every secret over as a credential."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SYNCD = Path(sys.executable).parent / "syncd"  # the venv's syncd stands in for /opt/syncd's


@pytest.fixture(scope="module")
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing (Debian's systemd package provides it)"
    return tool


def installed_copy(unit: Path, directory: Path) -> Path:
    """The unit as it would be installed, for an instance where it is a template."""
    name = unit.name.replace("@.", "@crm.")
    copy = directory / name
    copy.write_text(unit.read_text().replace("/opt/syncd/bin/syncd", str(SYNCD)))
    return copy


@pytest.mark.parametrize("unit", ["syncd.service", "syncd@.service", "syncd-worker@.service"])
def test_unit_verifies(unit: str, analyze: str, tmp_path: Path) -> None:
    copy = installed_copy(UNITS / unit, tmp_path)
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syncd" not in result.stderr, result.stderr


@pytest.mark.parametrize("unit", ["syncd.service", "syncd@.service", "syncd-worker@.service"])
def test_unit_exposure_is_at_most_1_2(unit: str, analyze: str, tmp_path: Path) -> None:
    copy = installed_copy(UNITS / unit, tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.2, result.stdout


@pytest.mark.parametrize("unit", ["syncd.service", "syncd@.service", "syncd-worker@.service"])
def test_every_setting_is_explained(unit: str) -> None:
    """Sysadmins read these files: each group of settings follows a comment saying why."""
    unexplained = []
    previous = ""
    for number, line in enumerate((UNITS / unit).read_text().splitlines(), start=1):
        if "=" in line and not line.startswith("#") and previous.strip() == "":
            unexplained.append(f"{unit}:{number}: {line}")
        previous = line
    assert unexplained == []


@pytest.mark.parametrize(
    ("unit", "credentials"),
    [
        ("syncd.service", "/etc/syncd/credentials"),
        ("syncd@.service", "/etc/syncd/%i/credentials"),
        ("syncd-worker@.service", "/etc/syncd/credentials"),
    ],
)
def test_the_broker_tls_key_is_handed_over_as_a_credential(unit: str, credentials: str) -> None:
    """DESIGN.md's ``key_file: ${CREDENTIALS_DIRECTORY}/syncd-tls-key``: the key never has to
    be readable by the service's user on disk, and lives in memory while the unit runs."""
    lines = (UNITS / unit).read_text().splitlines()
    assert f"LoadCredential=syncd-tls-key:{credentials}/syncd-tls-key" in lines


def test_workers_share_one_configuration_and_each_names_itself() -> None:
    """syncd-worker@N instances run the same config.yaml (one job, shared queues), each with
    its own instance name (logs, syncd_instance_info) and its own state directory (ledger)."""
    lines = (UNITS / "syncd-worker@.service").read_text().splitlines()
    assert "ExecStart=/opt/syncd/bin/syncd run -c /etc/syncd/config.yaml" in lines
    assert "Environment=SYNCD_INSTANCE=%H-%i" in lines
    assert "StateDirectory=syncd/worker-%i" in lines
    assert "EnvironmentFile=-/etc/syncd/worker-%i.env" in lines  # optional: the "-"
