"""Optional drivers stay optional: without PyMySQL syncd imports, checks, and names the extra."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from syncd.config.drivers import DriverProblem, with_driver

# A snippet runs in a fresh interpreter where `import pymysql` fails, as after `pip install syncd`.
_WITHOUT_PYMYSQL = "import sys\nsys.modules['pymysql'] = None\n"


def _without_pymysql(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_PYMYSQL + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_every_module_but_the_mysql_ones_imports_without_pymysql() -> None:
    result = _without_pymysql(
        """
        import importlib, pkgutil
        import syncd
        failed = []
        names = [m.name for m in pkgutil.walk_packages(syncd.__path__, "syncd.")]
        for name in names:
            if name.endswith(".mysql"):
                continue
            try:
                importlib.import_module(name)
            except ImportError as exc:
                failed.append(f"{name}: {exc}")
        print(len(names), "modules")
        print("\\n".join(failed))
        """
    )
    assert result.returncode == 0, result.stderr
    count, _, failures = result.stdout.partition("\n")
    assert int(count.split()[0]) > 40  # the walk really saw the package
    assert failures.strip() == ""


def _mysql_config(directory: Path) -> Path:
    (directory / "mappings").mkdir()
    (directory / "mappings" / "m.yaml").write_text(
        "mappings:\n"
        "  - name: customers\n"
        "    source: {system: crm, table: public.customers}\n"
        "    target: {database: mart, table: customers}\n"
        "    key: [id]\n"
    )
    config = directory / "config.yaml"
    config.write_text(
        'databases:\n  mart: {url: "mysql+pymysql://root@127.0.0.1:3306/test"}\n'
        "mappings: mappings/\n"
    )
    return config


@pytest.mark.parametrize("command", [["check", "--offline"], ["check"], ["run"], ["status"]])
def test_a_mysql_target_without_pymysql_exits_2_naming_the_extra(
    tmp_path: Path, command: list[str]
) -> None:
    config = _mysql_config(tmp_path)
    result = _without_pymysql(
        f"""
        from syncd.commands.cli import main
        raise SystemExit(main({[*command, "-c", str(config)]!r}))
        """
    )
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "pip install 'syncd[mysql]'" in output
    assert "config.yaml:2" in output  # the file and line of the url
    assert "Traceback" not in output


def test_a_mysql_source_without_pymysql_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "sources:\n"
        "  shop:\n"
        '    url: "mysql+pymysql://root@127.0.0.1:3306/test"\n'
        "    capture: outbox\n"
        "    tables: [orders]\n"
    )
    result = _without_pymysql(
        f"""
        from syncd.commands.cli import main
        raise SystemExit(main(["check", "--offline", "-c", {str(config)!r}]))
        """
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sources.shop.url" in result.stdout + result.stderr
    assert "pip install 'syncd[mysql]'" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        # SQLAlchemy 2.1 takes psycopg (3) for a bare postgresql://; syncd is written for psycopg2.
        ("postgresql+psycopg://u@h/db", "write postgresql+psycopg2://"),
        ("mysql+mysqldb://root@h/db", "through pymysql, not mysqldb"),
        ("postgresql+asyncpg://u@h/db", "write postgresql+psycopg2://"),
        ("oracle://u@h/db", "oracle is not a database syncd can use"),
        ("mariadb+pymysql://u@h/db", "mariadb is not a database syncd can use"),
    ],
)
def test_a_driver_syncd_does_not_speak_is_named_with_what_to_write(url: str, says: str) -> None:
    with pytest.raises(DriverProblem, match=re.escape(says)):
        with_driver(make_url(url), ("postgresql", "sqlite", "mysql"))


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg2://u@h/db", "sqlite:///x.db", "sqlite://", "sqlite+pysqlite://"]
)
def test_the_drivers_a_plain_install_brings_are_usable(url: str) -> None:
    assert with_driver(make_url(url)) == make_url(url)


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("mysql://u@h/db?charset=utf8mb4", "mysql+pymysql://u@h/db?charset=utf8mb4"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_a_url_without_a_driver_gets_the_one_syncd_speaks(url: str, resolved: str) -> None:
    # SQLAlchemy's own defaults (psycopg 3, mysqlclient) are not installed with syncd.
    assert with_driver(make_url(url)).render_as_string() == resolved
