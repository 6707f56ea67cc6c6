"""The database drivers syncd speaks, and what to install when one is missing.

A plain ``pip install syncd`` brings psycopg2 (PostgreSQL) and Python's own sqlite3; PyMySQL
(MariaDB/MySQL) is the optional ``syncd[mysql]`` extra. A URL whose driver is not installed,
or is not the one syncd's SQL is written for, is a configuration error that says what to
install or write — found when the configuration is read, before anything connects, so no
command ever dies on an ImportError.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sqlalchemy.engine import URL


@dataclass(frozen=True)
class Driver:
    backend: str  # SQLAlchemy's backend name: the part of the URL scheme before '+'
    name: str  # SQLAlchemy's driver name: the part after '+' (or its default)
    module: str  # the DBAPI module it imports
    install: str  # how a user gets it


DRIVERS = {
    driver.backend: driver
    for driver in (
        Driver(
            "postgresql", "psycopg2", "psycopg2", "pip install psycopg2-binary (syncd requires it)"
        ),
        Driver("sqlite", "pysqlite", "sqlite3", "a Python built with sqlite3"),
        Driver("mysql", "pymysql", "pymysql", "pip install 'syncd[mysql]'"),
        Driver("mariadb", "pymysql", "pymysql", "pip install 'syncd[mysql]'"),
    )
}


class DriverProblem(Exception):
    """A URL syncd cannot use for want of its driver; the message says what to do."""


def with_driver(url: URL, backends: tuple[str, ...] = tuple(DRIVERS)) -> URL:
    """``url`` with syncd's driver for its database, which must be installed.

    A URL without a driver (``postgresql://``, ``mysql://``) gets syncd's: SQLAlchemy's own
    default differs (psycopg 3 for PostgreSQL since SQLAlchemy 2.1, mysqlclient for MySQL), and
    syncd's SQL is written for the drivers above. ``backends`` narrows the database kinds the
    caller accepts (in the order they are offered). Raises DriverProblem.
    """
    backend = url.get_backend_name()
    driver = DRIVERS.get(backend)
    if driver is None or backend not in backends:
        offered = ", ".join(f"{DRIVERS[b].backend}+{DRIVERS[b].name}://" for b in backends)
        raise DriverProblem(
            f"{backend} is not a database syncd can use here; write a URL starting {offered}"
        )
    if "+" not in url.drivername and url.get_driver_name() != driver.name:
        url = url.set(drivername=f"{backend}+{driver.name}")
    elif url.get_driver_name() != driver.name:
        raise DriverProblem(
            f"syncd talks to {backend} through {driver.name}, not {url.get_driver_name()}; "
            f"write {backend}+{driver.name}://…"
        )
    if not driver_installed(driver):
        raise DriverProblem(
            f"{backend}+{driver.name}:// needs the {driver.module} module: {driver.install}"
        )
    return url


def driver_installed(driver: Driver) -> bool:
    try:
        importlib.import_module(driver.module)
    except ImportError:
        return False
    return True
