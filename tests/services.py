"""Real services for the tests: an ActiveMQ broker and a throwaway PostgreSQL cluster.

No mocks and no pytest here; ``tests/conftest.py`` wraps these in session fixtures.

- :class:`Broker` runs ``activemq/syncd-broker`` (the repository's broker configuration), or
  uses the broker that ``SYNCD_TEST_BROKER=host:port`` names.
- :class:`PostgresCluster` runs ``initdb`` + ``pg_ctl`` from PostgreSQL's binaries, or uses
  the server that ``SYNCD_TEST_POSTGRES_URL`` names.

A service that cannot start raises ``RuntimeError`` with the tail of its log: a missing
service must fail the run, never skip it. Services named by the environment are not ours to
stop or kill, so the fault-injection methods raise :class:`ExternalServiceError` for them;
``close()`` is the teardown that is safe either way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy.engine import URL, make_url

from syncd.broker.statistics import parse_map_json as parse_map_json  # re-exported for tests
from syncd.broker.statistics import queue_statistics
from syncd.config import DEFAULTS, BrokerConfig

REPO = Path(__file__).resolve().parent.parent
SYNCD_BROKER = REPO / "activemq" / "syncd-broker"
PG_BIN = Path(os.environ.get("SYNCD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
LOCALHOST = "127.0.0.1"
BROKER_ENV = "SYNCD_TEST_BROKER"
POSTGRES_ENV = "SYNCD_TEST_POSTGRES_URL"
# The broker script itself gives up after 60 s and prints its log; this only guards a hang.
BROKER_COMMAND_TIMEOUT_S = 120
PG_START_TIMEOUT_S = 60
LOG_TAIL_LINES = 40

T = TypeVar("T")


class ExternalServiceError(RuntimeError):
    """A fault-injection call on a service this harness did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], T], timeout_s: float, what: str = "condition", interval_s: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy, and return that: the one wait of the
    tests (never sleep-then-assert).

    Raises AssertionError naming ``what`` when ``timeout_s`` passes first, so a test that
    waits reads as the behaviour it expects ("the row to appear"). ``check`` is asked once
    more at the deadline: a slow machine that got there late still gets its answer.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def log_tail(*paths: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of each existing log, headed by its path, for error messages."""
    parts = []
    for path in paths:
        if path.is_file():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- last lines of {path} ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no log written)"


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie nobody has reaped yet counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


# --------------------------------------------------------------------------------- ActiveMQ


class Broker:
    """An ActiveMQ Classic broker with the repository's configuration, reachable over STOMP.

    Started with :meth:`start`; ``dir`` holds its KahaDB, so :meth:`kill` + :meth:`restart`
    keeps every persistent message that was not acknowledged.
    """

    def __init__(
        self,
        host: str,
        port: int,
        directory: Path | None,
        config_file: str | None = None,
        store: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.dir = directory  # None for a broker named by SYNCD_TEST_BROKER
        self.config_file = config_file  # in dir/conf; None: the script's default (activemq.xml)
        self.store = store  # a shared KahaDB directory (a master/slave pair); None: dir's own

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        config_file: str | None = None,
        store: Path | None = None,
    ) -> Broker:
        """Start a broker whose state lives in ``workdir`` and wait until it answers STOMP.

        Without ``port`` a free one is chosen (and another one tried if it is taken before
        the broker binds it). With SYNCD_TEST_BROKER set, that broker is used instead.
        ``config_file`` starts ``workdir/conf/config_file`` (``workdir/conf`` then is the
        caller's own directory, see syncd-broker --help); never an external broker.
        ``store`` keeps KahaDB there: a second broker on the same ``store`` starts as the
        standby of a master/slave pair (it returns once it waits for the store's lock).
        """
        external = os.environ.get(BROKER_ENV)
        if external and config_file is None and store is None:
            host, _, port_text = external.rpartition(":")
            if not host or not port_text.isdigit():
                raise RuntimeError(f"{BROKER_ENV}={external!r}: expected host:port")
            return cls(host, int(port_text), None)
        attempts_left = 1 if port is not None else 3
        while True:
            broker = cls(
                LOCALHOST,
                port if port is not None else free_port(),
                Path(workdir),
                config_file,
                store,
            )
            attempts_left -= 1
            try:
                broker._run_script("start", *broker._start_args())
            except RuntimeError as error:
                # free_port() cannot reserve the port; someone may take it before the broker.
                if attempts_left and "in use" in str(error):
                    continue
                raise
            return broker

    @property
    def url(self) -> str:
        """``host:port`` as syncd's config.yaml writes it."""
        return f"{self.host}:{self.port}"

    @property
    def owned(self) -> bool:
        """True if this harness started the broker (and may stop or kill it)."""
        return self.dir is not None

    def is_running(self) -> bool:
        if self.dir is None:
            return True
        result = self._script("status")
        return result.returncode == 0

    def stop(self) -> None:
        """Stop gracefully (SIGTERM; SIGKILL after 30 s)."""
        self._run_script("stop")

    def kill(self) -> None:
        """SIGKILL the broker: a crash, as far as clients and KahaDB can tell."""
        self._run_script("kill")

    def restart(self) -> None:
        """Start again on the same port with the same data; stops it first if it runs."""
        self._run_script("stop")
        self._run_script("start", *self._start_args())

    def start_again(self) -> None:
        """Start after a kill or stop, on the same port and store (a standby, in a pair)."""
        self._run_script("start", *self._start_args())

    def serving(self) -> bool:
        """True if its STOMP port accepts connections (a standby's stays closed)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            return sock.connect_ex((self.host, self.port)) == 0

    def _start_args(self) -> list[str]:
        store = ["--store", str(self.store)] if self.store is not None else []
        return [str(self.port), *store]

    def close(self) -> None:
        """Teardown: stop a broker this harness started; leave an external one alone."""
        if self.owned:
            self.stop()

    def queue_stats(self, queue_name: str, timeout_s: float = 10) -> dict[str, Any]:
        """The statistics plugin's counters for one queue (``size``, ``enqueueCount``, ...).

        ``queue_name`` without ``/queue/``. The broker only answers for a queue that exists.
        """
        return _destination_stats(self.host, self.port, queue_name, timeout_s)

    def _run_script(self, command: str, *args: str) -> None:
        result = self._script(command, *args)
        if result.returncode != 0:
            raise RuntimeError(
                f"syncd-broker {command} {self.dir} {' '.join(args)} failed "
                f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def _script(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        if self.dir is None:
            raise ExternalServiceError(
                f"cannot {command} the broker at {self.url}: it comes from {BROKER_ENV}, and "
                f"fault injection needs a broker this harness started (unset {BROKER_ENV})"
            )
        env = dict(os.environ)
        if self.config_file is not None:
            env["SYNCD_BROKER_CONFIG"] = self.config_file
        try:
            return subprocess.run(
                [str(SYNCD_BROKER), command, str(self.dir), *args],
                capture_output=True,
                text=True,
                timeout=BROKER_COMMAND_TIMEOUT_S,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired as error:
            data = self.dir / "data"
            raise RuntimeError(
                f"syncd-broker {command} {self.dir} hung for {BROKER_COMMAND_TIMEOUT_S} s\n"
                + log_tail(data / "console.log", data / "activemq.log")
            ) from error


class BrokerPair:
    """A shared-store master/slave pair: two brokers, one KahaDB directory (``store``).

    The first started is the master; the second waits for the store's lock and takes over,
    with every persistent message, when the master dies. ``hosts`` lists both, as a
    config.yaml's ``broker.hosts`` would.
    """

    def __init__(self, first: Broker, second: Broker) -> None:
        self.brokers = (first, second)

    @classmethod
    def start(cls, workdir: Path) -> BrokerPair:
        store = Path(workdir) / "store"
        first = Broker.start(Path(workdir) / "a", store=store)
        second = Broker.start(Path(workdir) / "b", store=store)
        return cls(first, second)

    @property
    def hosts(self) -> list[str]:
        return [broker.url for broker in self.brokers]

    def master(self, timeout_s: float = 60) -> Broker:
        """The broker that serves (waiting for a standby to take over, if it must)."""
        serving = wait_until(
            lambda: next((b for b in self.brokers if b.is_running() and b.serving()), None),
            timeout_s,
            interval_s=0.2,
            what="a broker of the pair to serve",
        )
        assert serving is not None
        return serving

    def standby(self) -> Broker:
        master = self.master()
        return next(b for b in self.brokers if b is not master)

    def fail_over(self, timeout_s: float = 60) -> Broker:
        """SIGKILL the master, wait for the standby to serve, start the old master again as
        the new standby; returns the new master."""
        old = self.master()
        new = next(b for b in self.brokers if b is not old)
        old.kill()
        wait_until(new.serving, timeout_s, interval_s=0.1, what=f"the standby {new.url} to serve")
        old.start_again()
        return new

    def queue_stats(self, queue_name: str, timeout_s: float = 10) -> dict[str, Any]:
        return self.master().queue_stats(queue_name, timeout_s)

    def close(self) -> None:
        # The standby first: stopping the master first would hand it the store, to stop again.
        for broker in reversed(self.brokers) if self.brokers[0].serving() else self.brokers:
            broker.close()


def _destination_stats(host: str, port: int, queue_name: str, timeout_s: float) -> dict[str, Any]:
    """Ask ActiveMQ's statistics plugin about one queue, through syncd's own client."""
    destination = f"/queue/{queue_name}"
    config = _broker_config(host, port, timeout_s)
    stats = queue_statistics(config, [destination], timeout_s)[destination]
    if not stats.exists:
        raise AssertionError(
            f"no statistics for queue {queue_name!r}: the broker does not know that queue"
        )
    return dict(stats.counters)


def _broker_config(host: str, port: int, connect_timeout_s: float) -> BrokerConfig:
    """config.yaml's broker defaults, pointed at one broker."""
    settings = {k: v for k, v in DEFAULTS["broker"].items() if k != "password_file"}
    return BrokerConfig(
        **{**settings, "hosts": ((host, port),), "connect_timeout_s": connect_timeout_s}
    )


# ------------------------------------------------------------------------------- PostgreSQL

# Throwaway-cluster settings: logical decoding for the capture tests, and no durability at
# all (fsync/full_page_writes off) because the cluster dies with the test session.
PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresCluster:
    """A PostgreSQL server the tests may create databases on.

    Started with :meth:`start`: a fresh cluster (trust authentication, user ``postgres``)
    owned by this harness, which :meth:`stop`, :meth:`kill` and :meth:`start_again` control.
    """

    def __init__(self, server_url: URL, root: Path | None) -> None:
        self._server_url = server_url
        self.root = root  # None for a server named by SYNCD_TEST_POSTGRES_URL
        self.host: str = server_url.host or LOCALHOST
        self.port: int = server_url.port or 5432

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        tls: ServerCertificate | None = None,
        hba: tuple[str, ...] = (),
    ) -> PostgresCluster:
        """initdb a new cluster under ``workdir`` (or /tmp, see below) and start it.

        ``tls``: serve TLS (``ssl = on``) with that certificate and key. ``hba``: pg_hba.conf
        lines put before initdb's trust lines, so that they decide first (hostssl-only or
        password roles); everyone else is still trusted.

        The postgres user must reach the data directory; when ``workdir`` is not reachable
        (pytest's 0700 /tmp/pytest-of-root, anything under /root), the cluster goes to a
        fresh directory under /tmp and ``workdir/cluster`` links to it; :meth:`destroy`
        removes it. With SYNCD_TEST_POSTGRES_URL set, that server is used instead.
        """
        external = os.environ.get(POSTGRES_ENV)
        if external:
            url = make_url(external).set(drivername="postgresql+psycopg2")
            if not url.database:
                url = url.set(database="postgres")
            return cls(url, None)
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).is_file():
                raise RuntimeError(
                    f"{PG_BIN / tool} not found: install PostgreSQL 15 "
                    "(apt-get install postgresql-15) or set SYNCD_TEST_PG_BIN"
                )
        port = port if port is not None else free_port()
        root = _make_cluster_root(Path(workdir))
        server_url = URL.create(
            "postgresql+psycopg2", "postgres", host=LOCALHOST, port=port, database="postgres"
        )
        cluster = cls(server_url, root)
        cluster._initdb(tls, hba)
        cluster.start_again()
        return cluster

    @property
    def owned(self) -> bool:
        """True if this harness started the cluster (and may stop or kill it)."""
        return self.root is not None

    @property
    def data_dir(self) -> Path:
        return self._owned_root("use the data directory of") / "data"

    @property
    def log_path(self) -> Path:
        return self._owned_root("read the log of") / "postgres.log"

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` on this server."""
        return self._server_url.set(database=dbname).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """A new, empty database ``name`` (dropped first if it exists); returns its URL."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        engine = sqlalchemy.create_engine(
            self.url(self._server_url.database or "postgres"), isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def start_again(self) -> None:
        """Start the (stopped or killed) cluster and wait until it accepts connections."""
        root = self._owned_root("start")
        pg_ctl_start = [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", str(PG_START_TIMEOUT_S)]
        result = _run_as_postgres(
            [*pg_ctl_start, "-D", str(root / "data"), "-l", str(root / "postgres.log")],
            cwd=root,
            timeout_s=PG_START_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL in {root} did not start (pg_ctl exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log_tail(root / 'postgres.log')}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Fast shutdown: open sessions are disconnected, committed data is kept.

        ``mode="immediate"`` for a cluster about to be deleted: a fast shutdown waits for
        every walsender to send its WAL, and a replication connection nobody reads any more
        (a test's capture that was not closed) holds it for up to wal_sender_timeout.
        """
        root = self._owned_root("stop")
        if not self._postmaster_pid():
            return
        result = _run_as_postgres(
            [str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(root / "data")],
            cwd=root,
            timeout_s=90,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL in {root} did not stop (pg_ctl exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{log_tail(root / 'postgres.log')}"
            )

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash) and wait until its backends have exited too.

        The backends notice the postmaster's death on their own; waiting for them matters
        because a new postmaster refuses to start while they still hold shared memory.
        """
        self._owned_root("kill")
        pid = self._postmaster_pid()
        if pid is None:
            return
        children = _child_pids(pid)
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: not any(_pid_alive(p) for p in (pid, *children)),
            timeout_s=30,
            what=f"PostgreSQL's postmaster {pid} and its backends to exit after SIGKILL",
        )
        # A new postmaster refuses to start while the pid in postmaster.pid exists, and a
        # killed postmaster stays a zombie until init reaps it (about a second in our CI
        # VM; never, in a container whose init does not reap). Once it is dead for sure,
        # its lock file is stale.
        try:
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=5)
        except AssertionError:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def close(self) -> None:
        """Teardown: stop a cluster this harness started; leave an external one alone."""
        if self.owned:
            self.stop()

    def destroy(self) -> None:
        """Stop the cluster and delete its files (no-op for an external server)."""
        if self.root is None:
            return
        self.stop("immediate")  # nothing of it is needed again: no checkpoint, no waiting
        shutil.rmtree(self.root, ignore_errors=True)

    def _owned_root(self, action: str) -> Path:
        if self.root is None:
            raise ExternalServiceError(
                f"cannot {action} the PostgreSQL server at {self.host}:{self.port}: it comes "
                f"from {POSTGRES_ENV}, and fault injection needs a cluster this harness "
                f"started (unset {POSTGRES_ENV})"
            )
        return self.root

    def _postmaster_pid(self) -> int | None:
        """The postmaster's pid if it runs (its postmaster.pid may outlive a SIGKILL)."""
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        pid = int(first_line) if first_line.strip().isdigit() else None
        return pid if pid is not None and _pid_alive(pid) else None

    def _initdb(self, tls: ServerCertificate | None, hba: tuple[str, ...]) -> None:
        root = self._owned_root("initdb")
        data = root / "data"
        # --no-sync: a throwaway cluster need not survive a power cut.
        options = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]
        result = _run_as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), *options, "--no-instructions"],
            cwd=root,
            timeout_s=120,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb in {data} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        settings = {
            **PG_SETTINGS,
            "port": str(self.port),
            # Sockets next to the data: the default /var/run/postgresql may be missing, and
            # a second cluster on the machine must not collide with this one.
            "unix_socket_directories": f"'{root}'",
        }
        if tls is not None:
            settings.update(_server_tls(tls, data))
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\n# syncd test harness (tests/services.py)\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        if hba:
            hba_file = data / "pg_hba.conf"
            hba_file.write_text("\n".join(hba) + "\n" + hba_file.read_text())


@dataclass(frozen=True)
class ServerCertificate:
    """A server's certificate chain and private key, PEM files (see tests/database_tls.py)."""

    cert_file: Path
    key_file: Path


def _server_tls(tls: ServerCertificate, data: Path) -> dict[str, str]:
    """Copy the certificate into the data directory; the settings that serve it.

    PostgreSQL refuses a key that others may read, or that belongs to someone else.
    """
    for source, name in ((tls.cert_file, "server.crt"), (tls.key_file, "server.key")):
        copy = data / name
        shutil.copyfile(source, copy)
        copy.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(copy, user="postgres", group="postgres")
    return {"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"}


def _make_cluster_root(workdir: Path) -> Path:
    """A directory the postgres user owns and can reach, for the data and the sockets."""
    workdir.mkdir(parents=True, exist_ok=True)
    if (workdir / "cluster").exists():
        raise RuntimeError(f"{workdir / 'cluster'} exists: start each cluster in a new workdir")
    if _postgres_can_reach(workdir):
        root = workdir / "cluster"
        root.mkdir()
    else:
        root = Path(tempfile.mkdtemp(prefix="syncd-pg-", dir="/tmp"))
        (workdir / "cluster").symlink_to(root)
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    return root


def _postgres_can_reach(directory: Path) -> bool:
    if os.geteuid() != 0:
        return True  # we will run PostgreSQL as ourselves
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(directory)],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _run_as_postgres(
    command: list[str], cwd: Path, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool; as root, as the postgres user (the server refuses root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    try:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(
            f"{' '.join(command)} hung for {timeout_s} s\n{log_tail(cwd / 'postgres.log')}"
        ) from error


def _child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


MARIADB_URL = os.environ.get("SYNCD_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@contextmanager
def mariadb_database(name: str) -> Iterator[str]:
    """A fresh database on the MariaDB server at ``MARIADB_URL``; its URL, dropped afterwards."""
    server = sqlalchemy.create_engine(MARIADB_URL, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    except sqlalchemy.exc.OperationalError as exc:
        server.dispose()
        raise RuntimeError(
            f"MariaDB at {MARIADB_URL} is unreachable ({exc.orig}); "
            "run scripts/install-system-deps (as root) to install and start it, "
            "or set SYNCD_TEST_MARIADB_URL"
        ) from exc
    try:
        yield make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()
