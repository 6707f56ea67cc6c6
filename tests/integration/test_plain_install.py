"""A plain `pip install` of the wheel — no extras, as the README's systemd install does — works.

`make test` installs `.[test]`, which brings PyMySQL and would hide a module that needs it; this
test builds the wheel, installs it without extras into a fresh virtual environment and runs the
commands a new user runs first, from a folder where the checkout's own package is not importable.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.commands import cli

REPO = Path(__file__).resolve().parents[2]


def _run(
    *command: str | Path, cwd: Path, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=cwd, timeout=timeout_s
    )


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the wheel of this checkout and its required dependencies only."""
    root = tmp_path_factory.mktemp("plain-install")
    source = root / "source"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(REPO / "syncd", source / "syncd", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = root / "wheels"
    built = _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source, cwd=root
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("syncd-*.whl")
    venv = root / "venv"
    made = _run(sys.executable, "-m", "venv", venv, cwd=root)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "pip", "install", "-q", wheel, cwd=root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield venv


def _commands() -> list[list[str]]:
    """Every command and sub-command of `syncd`, read from its own parser."""
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(cli._parser(), [])
    return found


def test_the_plain_install_has_no_pymysql(plain_venv: Path) -> None:
    probe = _run(plain_venv / "bin" / "python", "-c", "import pymysql", cwd=plain_venv)
    assert probe.returncode != 0 and "No module named 'pymysql'" in probe.stderr


def test_every_command_answers_help_on_a_plain_install(plain_venv: Path) -> None:
    syncd = plain_venv / "bin" / "syncd"
    top = _run(syncd, "--help", cwd=plain_venv)
    assert top.returncode == 0, top.stderr
    commands = _commands()
    assert (
        ["run"] in commands and ["dlq", "replay"] in commands and ["capture", "install"] in commands
    )
    for command in commands:
        shown = _run(syncd, *command, "--help", cwd=plain_venv)
        assert shown.returncode == 0, f"syncd {' '.join(command)} --help: {shown.stderr}"
        assert shown.stdout.startswith("usage: syncd " + " ".join(command))


def test_the_shipped_config_checks_offline_on_a_plain_install(plain_venv: Path) -> None:
    checked = _run(
        plain_venv / "bin" / "syncd",
        "check",
        "--offline",
        "-c",
        REPO / "config.yaml",
        cwd=plain_venv,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_mysql_target_on_a_plain_install_exits_2_naming_the_extra(
    plain_venv: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        'databases:\n  mart: {url: "mysql+pymysql://root@127.0.0.1:3306/test"}\n'
        "mappings: mappings/\n"
    )
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "m.yaml").write_text(
        "mappings:\n  - name: m\n    source: {system: crm, table: t}\n"
        "    target: {database: mart, table: t}\n    key: [id]\n"
    )
    for command in (["check", "--offline"], ["run"]):
        result = _run(plain_venv / "bin" / "syncd", *command, "-c", config, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "pip install 'syncd[mysql]'" in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
