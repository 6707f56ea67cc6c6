"""config.yaml loading: defaults, ${VAR} expansion, secrets, paths and every error message."""

from __future__ import annotations

import textwrap
from pathlib import Path
from textwrap import dedent

import pytest
from sqlalchemy.engine import make_url as sa_url

from syncd.config import DEFAULTS, SOURCE_DEFAULTS, Config, SourceConfig, expand_env, load_config
from syncd.errors import ConfigError

MINIMAL = """
databases:
  warehouse: {url: "postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse"}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ or {})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    """The problems as printed, with the tmp_path prefix cut so assertions read like the docs."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems]


# --- defaults and the good path -----------------------------------------------------------------


def test_minimal_config_gets_every_default_from_the_table(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)

    broker = DEFAULTS["broker"]
    assert config.broker.hosts == (("127.0.0.1", 61613),)
    assert config.broker.user is None
    assert config.broker.password is None
    assert config.broker.heartbeat_ms == broker["heartbeat_ms"] == 10_000
    assert config.broker.connect_timeout_s == 10.0
    assert config.broker.receipt_timeout_s == 30.0
    assert config.broker.prefetch == 2000
    assert config.broker.queue_prefix == "/queue/syncd."
    assert config.broker.dead_letter_queue == "/queue/syncd.DLQ"
    assert config.broker.publish_batch_events == 500
    assert config.apply.batch_max_messages == 500
    assert config.apply.batch_linger_ms == 20
    assert config.apply.positions_table == "syncd_positions"
    assert config.retry.attempts == 5
    assert config.retry.initial_backoff_ms == 200
    assert config.retry.max_backoff_ms == 10_000
    assert config.logging.level == "info"


def test_config_path_and_default_mappings_dir_are_absolute_next_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("config.yaml"), {})

    assert config.path == tmp_path / "config.yaml"
    assert config.mappings_dir == tmp_path / "mappings"


def test_relative_mappings_dir_resolves_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", MINIMAL + "mappings: maps/\n")
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("etc/config.yaml"), {})

    assert config.mappings_dir == tmp_path / "etc" / "maps"


def test_absolute_mappings_dir_is_kept(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "mappings: /srv/syncd/mappings\n")

    assert config.mappings_dir == Path("/srv/syncd/mappings")


def test_every_section_can_be_set(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        broker:
          hosts: ["mq1:61613", "mq2:61614", "[::1]:61615"]
          user: syncd
          password: s3cret
          heartbeat_ms: 0
          connect_timeout_s: 2
          receipt_timeout_s: 4.5
          prefetch: 10
          queue_prefix: /queue/changes.
          dead_letter_queue: /queue/changes.dead
          publish_batch_events: 50
        databases:
          warehouse: {url: "sqlite://"}
        apply: {batch_max_messages: 7, batch_linger_ms: 0, positions_table: meta.positions}
        retry: {attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 50}
        logging: {level: DEBUG}
        """,
    )

    assert config.broker.hosts == (("mq1", 61613), ("mq2", 61614), ("::1", 61615))
    assert config.broker.user == "syncd"
    assert config.broker.password == "s3cret"
    assert config.broker.heartbeat_ms == 0
    assert config.broker.connect_timeout_s == 2.0
    assert isinstance(config.broker.connect_timeout_s, float)
    assert config.broker.receipt_timeout_s == 4.5
    assert config.broker.prefetch == 10
    assert config.queue_for("crm") == "/queue/changes.crm"
    assert config.broker.dead_letter_queue == "/queue/changes.dead"
    assert config.broker.publish_batch_events == 50
    assert (config.apply.batch_max_messages, config.apply.batch_linger_ms) == (7, 0)
    assert config.apply.positions_table == "meta.positions"
    assert (config.retry.attempts, config.retry.max_backoff_ms) == (3, 50)
    assert config.logging.level == "debug"


def test_queue_for_appends_the_system_to_the_default_prefix(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).queue_for("crm") == "/queue/syncd.crm"


def test_a_single_host_string_is_read_as_a_list_of_one(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "broker: {hosts: 'mq:61613'}\n")

    assert config.broker.hosts == (("mq", 61613),)


def test_comma_separated_hosts_from_an_env_variable_are_failover_in_order(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "broker: {hosts: '${MQ_HOSTS}'}\n", {"MQ_HOSTS": "a:1, b:2"})

    assert config.broker.hosts == (("a", 1), ("b", 2))


def test_an_empty_section_means_all_its_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "broker:\nretry:\n")

    assert config.broker.prefetch == 2000
    assert config.retry.attempts == 5


def test_config_is_frozen_and_databases_are_read_only(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)

    with pytest.raises(AttributeError):
        config.broker = config.broker  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.databases["other"] = config.databases["warehouse"]  # type: ignore[index]


def test_repr_does_not_show_passwords(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        broker: {password: broker-secret}
        databases:
          warehouse: {url: "postgresql://syncd@db/w", password: db-secret}
        """,
    )

    assert "broker-secret" not in repr(config)
    assert "db-secret" not in repr(config)
    assert config.databases["warehouse"].display_url == "postgresql+psycopg2://syncd:***@db/w"


# --- sources -------------------------------------------------------------------------------------

SOURCES = """\
sources:
  crm:
    url: "postgresql+psycopg2://syncd@db1/crm"
    capture: logical
    tables: [public.customers, orders]
"""


def test_no_sources_section_means_nothing_to_capture(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).sources == {}
    assert load(tmp_path, MINIMAL + "sources:\n  # crm: {}\n").sources == {}


def test_source_gets_its_queue_and_batch_size_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + SOURCES)

    crm = config.sources["crm"]
    assert crm == SourceConfig(
        name="crm",
        url=crm.url,
        capture="logical",
        tables=("public.customers", "orders"),
        queue="/queue/syncd.crm",
        batch_events=SOURCE_DEFAULTS["batch_events"],
    )
    assert crm.url.render_as_string() == "postgresql+psycopg2://syncd@db1/crm"
    assert crm.queue == config.queue_for("crm")
    assert crm.transactions == "per-row" and not crm.atomic


@pytest.mark.parametrize("capture", ["logical", "outbox"])
def test_atomic_transactions_are_read_for_postgresql_sources(tmp_path: Path, capture: str) -> None:
    text = SOURCES.replace("capture: logical", f"capture: {capture}\n    transactions: atomic")
    crm = load(tmp_path, MINIMAL + text).sources["crm"]

    assert crm.transactions == "atomic" and crm.atomic


@pytest.mark.parametrize("mode", ["ATOMIC", "per_row", "yes", "true", "1", "[atomic]", "''"])
def test_unknown_transactions_mode_says_which_there_are(tmp_path: Path, mode: str) -> None:
    text = SOURCES.replace("capture: logical", f"capture: logical\n    transactions: {mode}")
    found = problems(tmp_path, MINIMAL + text)

    assert len(found) == 1
    assert found[0].startswith("config.yaml:7: sources.crm.transactions: expected per-row (each")
    assert "or atomic (each source transaction applied whole), found" in found[0]


@pytest.mark.parametrize("url", ["sqlite:///shop.db", "mysql+pymysql://syncd@db1/shop"])
def test_atomic_outbox_needs_a_source_that_names_its_transactions(tmp_path: Path, url: str) -> None:
    text = SOURCES.replace("postgresql+psycopg2://syncd@db1/crm", url).replace(
        "capture: logical", "capture: outbox\n    transactions: atomic"
    )
    found = problems(tmp_path, MINIMAL + text)

    backend = url.split(":")[0].split("+")[0]
    assert found == [
        f"config.yaml:7: sources.crm.transactions: capture: outbox from {backend} cannot name "
        "the source's transactions; atomic needs capture: logical, or capture: outbox from "
        "PostgreSQL. Write transactions: per-row"
    ]


def test_source_settings_secret_env_and_queue_prefix(tmp_path: Path) -> None:
    (tmp_path / "crm-password").write_text("s3cret\n")
    config = load(
        tmp_path,
        MINIMAL
        + dedent("""
        broker: {queue_prefix: /queue/cdc.}
        sources:
          crm:
            url: "postgresql+psycopg2://syncd@${CRM_HOST}/crm"
            password_file: crm-password
            capture: outbox
            tables: [public.customers]
            batch_events: 100
          shop:
            url: "sqlite:///shop.db"
            capture: outbox
            tables: [items]
            queue: /queue/shop.changes
        """),
        {"CRM_HOST": "db1"},
    )

    crm, shop = config.sources["crm"], config.sources["shop"]
    assert crm.url.password == "s3cret" and crm.url.host == "db1"
    assert crm.display_url == "postgresql+psycopg2://syncd:***@db1/crm"
    assert "s3cret" not in repr(config)
    assert (crm.capture, crm.batch_events, crm.queue) == ("outbox", 100, "/queue/cdc.crm")
    assert shop.url.database == f"{tmp_path}/shop.db"  # next to the config, as for targets
    assert shop.queue == "/queue/shop.changes"


def test_a_capture_only_config_needs_no_target_database(tmp_path: Path) -> None:
    config = load(tmp_path, SOURCES)

    assert config.databases == {}
    assert list(config.sources) == ["crm"]


def test_sources_are_read_only(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + SOURCES)

    with pytest.raises(TypeError):
        config.sources["other"] = config.sources["crm"]  # type: ignore[index]


def test_logical_capture_needs_a_postgresql_source(tmp_path: Path) -> None:
    found = problems(
        tmp_path, MINIMAL + SOURCES.replace("postgresql+psycopg2://syncd@db1", "sqlite:///")
    )

    assert found == [
        "config.yaml:5: sources.crm.url: capture: logical reads PostgreSQL only, not sqlite; "
        "write a URL such as 'postgresql+psycopg2://syncd@db1:5432/crm', or capture: outbox"
    ]


def test_unknown_capture_mode_says_which_there_are(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + SOURCES.replace("capture: logical", "capture: wal"))

    assert found == [
        "config.yaml:6: sources.crm.capture: expected logical (PostgreSQL logical decoding) or "
        "outbox (triggers and an outbox table), found 'wal'"
    ]


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        (
            "[]",
            "expected a list of tables such as [public.customers, public.orders], "
            "found an empty list",
        ),
        (
            "public.customers",
            "expected a list of tables such as [public.customers, "
            "public.orders], found 'public.customers'",
        ),
        (
            "[public.customers, 7]",
            "expected a table name such as public.customers or "
            "customers (letters, digits, _), found 7",
        ),
        ("[customers, customers]", "customers is listed twice; keep one"),
    ],
)
def test_tables_must_be_a_list_of_table_names(tmp_path: Path, tables: str, message: str) -> None:
    found = problems(tmp_path, MINIMAL + SOURCES.replace("[public.customers, orders]", tables))

    assert len(found) == 1
    assert found[0].startswith("config.yaml:7: sources.crm.tables")
    assert found[0].endswith(message)


@pytest.mark.parametrize("name", ["CRM", "crm-eu", "1crm", "c" * 33])
def test_source_names_must_suit_slot_and_trigger_names(tmp_path: Path, name: str) -> None:
    found = problems(tmp_path, MINIMAL + SOURCES.replace("crm:", f"{name}:", 1))

    assert found == [
        f"config.yaml:4: sources.{name}: a source name must be a lowercase letter, then up to 31 "
        "lowercase letters, digits and _ (it becomes part of the replication slot's or the "
        "triggers' names), e.g. crm"
    ]


def test_every_source_mistake_is_reported_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        MINIMAL
        + dedent("""
        sources:
          crm:
            tabels: [customers]
            queue: crm
            batch_events: 0
          shop: postgresql://db/shop
        """),
    )

    assert found == [
        "config.yaml:5: sources.crm.url: missing; "
        "write url: 'postgresql+psycopg2://syncd@db1:5432/crm'",
        "config.yaml:5: sources.crm.capture: missing; write capture: logical or outbox",
        "config.yaml:5: sources.crm.tables: missing; list the tables to capture, "
        "e.g. [public.customers]",
        "config.yaml:6: sources.crm.tabels: unknown key; did you mean 'tables'? "
        "(allowed: url, password, password_file, capture, tables, queue, batch_events, "
        "transactions)",
        "config.yaml:7: sources.crm.queue: expected a queue name starting with /queue/, "
        "such as /queue/syncd.DLQ, found 'crm'",
        "config.yaml:8: sources.crm.batch_events: expected a whole number from 1 to 100000, "
        "found 0",
        "config.yaml:9: sources.shop: expected {url: 'postgresql+psycopg2://syncd@db1:5432/crm', "
        "capture: logical, tables: [public.customers]}, found 'postgresql://db/shop'",
    ]


def test_sources_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "sources: [crm]\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:3: sources: expected source names with their settings")


# --- databases ------------------------------------------------------------------------------------


def test_database_password_is_put_into_the_url(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        databases:
          warehouse: {url: "postgresql+psycopg2://syncd@db:5432/w", password: "p@ss:word"}
        """,
    )

    database = config.databases["warehouse"]
    assert database.name == "warehouse"
    assert database.url == "postgresql+psycopg2://syncd:p%40ss%3Aword@db:5432/w"


def test_database_tls_settings_survive_the_password_file(tmp_path: Path) -> None:
    """password_file fills in the password; the query (TLS settings) is kept as written."""
    (tmp_path / "pw").write_text("s3cret\n")
    url = "postgresql+psycopg2://syncd@db/w?sslmode=verify-full&sslrootcert=/etc/syncd/ca.pem"
    config = load(tmp_path, f"databases:\n  warehouse: {{url: '{url}', password_file: pw}}\n")

    database = config.databases["warehouse"]
    assert database.url == (
        "postgresql+psycopg2://syncd:s3cret@db/w"
        "?sslmode=verify-full&sslrootcert=%2Fetc%2Fsyncd%2Fca.pem"
    )
    assert database.display_url == (
        "postgresql+psycopg2://syncd:***@db/w?sslmode=verify-full&sslrootcert=/etc/syncd/ca.pem"
    )


def test_relative_tls_files_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    query = (
        "sslrootcert=tls/ca.pem&sslcert=/abs/c.pem&sslkey=~/k.pem&sslmode=verify-full"
        "&ssl_ca=tls/my-ca.pem&application_name=tls/not-a-file"
    )
    url = f"postgresql+psycopg2://syncd@db/w?{query}"
    source_url = "postgresql+psycopg2://syncd@db1/crm?sslrootcert=system"
    config = load(
        tmp_path,
        f"""
        databases:
          warehouse: {{url: '{url}'}}
        sources:
          crm: {{url: '{source_url}', capture: logical, tables: [public.t]}}
        """,
    )

    query_of = dict(sa_url(config.databases["warehouse"].url).query)
    assert query_of["sslrootcert"] == str(tmp_path / "tls/ca.pem")
    assert query_of["ssl_ca"] == str(tmp_path / "tls/my-ca.pem")
    assert query_of["sslcert"] == "/abs/c.pem"
    assert query_of["sslkey"] == str(Path("~/k.pem").expanduser())
    assert query_of["application_name"] == "tls/not-a-file"
    # libpq's word for the operating system's CAs is not a file name.
    assert config.sources["crm"].url.query["sslrootcert"] == "system"


def test_display_url_masks_secrets_in_the_query_too(tmp_path: Path) -> None:
    url = (
        "postgresql+psycopg2://syncd:Hidden-1@db/w"
        "?password=Hidden-2&sslpassword=Hidden-3&PASSWD=Hidden-4&sslmode=require"
    )
    config = load(tmp_path, f"databases:\n  warehouse: {{url: '{url}'}}\n")

    shown = config.databases["warehouse"].display_url
    assert shown == (
        "postgresql+psycopg2://syncd:***@db/w"
        "?PASSWD=***&password=***&sslmode=require&sslpassword=***"
    )  # SQLAlchemy keeps the query sorted
    assert "Hidden-" not in repr(config)


def test_a_url_that_holds_a_password_is_never_echoed_when_wrong(tmp_path: Path) -> None:
    """Not even a port that is not a number (SQLAlchemy raises ValueError for it)."""
    for url in ("postgresql://u:pw-secret@db:notaport/w", "not a url pw-secret"):
        found = problems(tmp_path, f"databases:\n  warehouse: {{url: '{url}'}}\n")
        assert found == [
            "config.yaml:2: databases.warehouse.url: expected a SQLAlchemy URL such as "
            "'postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse', "
            "found text that is not shown here, as it may hold a secret"
        ]


def test_yaml_mistakes_next_to_a_password_never_quote_its_line(tmp_path: Path) -> None:
    """PyYAML's own messages quote the offending line; syncd's say where it is instead."""
    merge = "databases:\n  w:\n    <<: 'pw-Hidden-1'\n    url: 'postgresql://a@b/c'\n"
    tagged = "databases:\n  w: {url: 'postgresql://a@b/c', password: !!int 'pw-Hidden-2'}\n"

    assert problems(tmp_path, merge) == [
        "config.yaml:3: databases.w: expected a mapping or list of mappings for merging, "
        "but found scalar"
    ]
    assert problems(tmp_path, tagged) == [
        "config.yaml:2: databases.w.password: not a valid tag:yaml.org,2002:int; remove the tag"
    ]


def test_relative_sqlite_file_resolves_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    config = load(
        tmp_path,
        """
        databases:
          relative: {url: "sqlite:///data/target.db"}
          absolute: {url: "sqlite:////var/lib/syncd/target.db"}
          memory: {url: "sqlite://"}
        """,
    )

    assert config.databases["relative"].url == f"sqlite:///{tmp_path}/data/target.db"
    assert config.databases["absolute"].url == "sqlite:////var/lib/syncd/target.db"
    assert config.databases["memory"].url == "sqlite://"


def test_missing_databases_section_is_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, "logging: {level: info}\n") == [
        "config.yaml: databases: missing; name at least one target, e.g. databases: "
        "{warehouse: {url: 'postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse'}}"
    ]


def test_empty_databases_section_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases: {}\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:1: databases: expected at least one target like")
    assert found[0].endswith("found an empty mapping")


def test_database_entry_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n  warehouse: postgresql://db/w\n")

    assert found == [
        "config.yaml:2: databases.warehouse: expected "
        "{url: 'postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse'} "
        "(and optionally password or password_file), found 'postgresql://db/w'"
    ]


def test_database_without_url_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n  warehouse: {password: x}\n")

    assert found == [
        "config.yaml:2: databases.warehouse.url: missing; "
        "write url: 'postgresql+psycopg2://syncd@127.0.0.1:5432/warehouse'"
    ]


def test_unparseable_database_url_is_reported_without_echoing_it(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n  warehouse: {url: 'user:hunter2 at db'}\n")

    assert len(found) == 1
    assert found[0].startswith(
        "config.yaml:2: databases.warehouse.url: expected a SQLAlchemy URL such as "
        "'postgresql+psycopg2://"
    )
    assert "hunter2" not in found[0]


def test_unknown_database_key_suggests_the_close_name(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n  w:\n    url: sqlite://\n    pasword: x\n")

    assert found == [
        "config.yaml:4: databases.w.pasword: unknown key; did you mean 'password'? "
        "(allowed: url, password, password_file)"
    ]


def test_password_given_twice_through_url_and_key_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n  w: {url: 'postgresql://u:one@db/w', password: two}\n")

    assert found == [
        "config.yaml:2: databases.w: the url already has a password; "
        "remove it from the url or remove password/password_file"
    ]


# --- ${VAR} expansion -----------------------------------------------------------------------------


def test_env_variables_expand_in_every_string_value(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        broker:
          hosts: ["${MQ_HOST}:61613"]
          user: ${MQ_USER}
        databases:
          warehouse: {url: "postgresql://syncd@${DB_HOST}/w"}
        mappings: ${MAPPINGS}
        """,
        {"MQ_HOST": "mq", "MQ_USER": "bob", "DB_HOST": "db", "MAPPINGS": "/srv/m"},
    )

    assert config.broker.hosts == (("mq", 61613),)
    assert config.broker.user == "bob"
    assert config.databases["warehouse"].url == "postgresql+psycopg2://syncd@db/w"
    assert config.mappings_dir == Path("/srv/m")


def test_env_default_is_used_when_the_variable_is_unset_or_empty(tmp_path: Path) -> None:
    text = MINIMAL + "broker: {user: '${MQ_USER:-syncd}', password: '${MQ_PASS:-}x'}\n"

    assert load(tmp_path, text).broker.user == "syncd"
    assert load(tmp_path, text, {"MQ_USER": ""}).broker.user == "syncd"
    assert load(tmp_path, text, {"MQ_USER": "ann"}).broker.user == "ann"
    assert load(tmp_path, text).broker.password == "x"


def test_double_dollar_is_a_literal_dollar_and_a_lone_dollar_is_kept(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "broker: {user: 'a$$b', password: 'pa$word'}\n")

    assert config.broker.user == "a$b"
    assert config.broker.password == "pa$word"


def test_numbers_may_come_from_env_variables(tmp_path: Path) -> None:
    text = MINIMAL + "broker: {prefetch: '${PREFETCH:-2000}', connect_timeout_s: '${T:-1.5}'}\n"

    assert load(tmp_path, text).broker.prefetch == 2000
    assert load(tmp_path, text, {"PREFETCH": "7"}).broker.prefetch == 7
    assert load(tmp_path, text).broker.connect_timeout_s == 1.5


def test_process_environment_is_used_when_no_environ_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TEST_USER", "from-env")
    path = write(tmp_path, MINIMAL + "broker: {user: '${SYNCD_TEST_USER}'}\n")

    assert load_config(path).broker.user == "from-env"


def test_unset_env_variable_names_the_key_and_the_variable(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        databases:
          warehouse: {url: "sqlite://"}
        broker:
          password: ${BROKER_PASSWORD}
        """,
    )

    assert found == [
        "config.yaml:4: broker.password: environment variable BROKER_PASSWORD is not set; "
        "set it or write ${BROKER_PASSWORD:-default}"
    ]


def test_unclosed_env_reference_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker: {user: '${USER'}\n")

    assert found == [
        "config.yaml:3: broker.user: '${' is not closed; write ${NAME}, or $$ for a literal $"
    ]


def test_env_reference_with_a_bad_name_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker: {user: '${1X}'}\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:3: broker.user: '${1X}' is not a variable reference")


def test_expand_env_follows_shell_default_rules() -> None:
    environ = {"SET": "value", "EMPTY": ""}

    assert expand_env("${SET}-${EMPTY}", environ) == ("value-", [])
    assert expand_env("${EMPTY:-fallback}${GONE:-x}", environ) == ("fallbackx", [])
    assert expand_env("$$SET costs $5", environ) == ("$SET costs $5", [])


# --- password_file --------------------------------------------------------------------------------


def test_password_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "broker-password").write_text("s3cret\n", encoding="utf-8")

    config = load(tmp_path, MINIMAL + f"broker: {{password_file: {tmp_path}/broker-password}}\n")

    assert config.broker.password == "s3cret"


def test_password_file_strips_only_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n\n", encoding="utf-8")

    assert load(tmp_path, MINIMAL + "broker: {password_file: pw}\n").broker.password == "s3cret\n"


def test_relative_password_file_resolves_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text("dbpw\n", encoding="utf-8")
    monkeypatch.chdir("/")

    config = load(
        tmp_path,
        """
        databases:
          warehouse: {url: "postgresql://syncd@db/w", password_file: secrets/db}
        """,
    )

    assert config.databases["warehouse"].url == "postgresql+psycopg2://syncd:dbpw@db/w"


def test_missing_password_file_names_the_path_and_the_os_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "broker:\n  password_file: nope\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert str(caught.value) == (
        f"{path}:4: broker.password_file: cannot read password file {tmp_path}/nope: "
        "No such file or directory"
    )


def test_empty_password_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n", encoding="utf-8")

    path = write(tmp_path, MINIMAL + "broker:\n  password_file: pw\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert (
        str(caught.value) == f"{path}:4: broker.password_file: password file {tmp_path}/pw is empty"
    )


def test_password_and_password_file_together_are_reported(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x", encoding="utf-8")

    found = problems(tmp_path, MINIMAL + "broker:\n  password: a\n  password_file: pw\n")

    assert found == [
        "config.yaml:5: broker: both password and password_file are set; keep one of them"
    ]


# --- reading and YAML errors ----------------------------------------------------------------------


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", {})

    assert str(caught.value) == (
        f"{tmp_path}/absent.yaml: cannot read config: [Errno 2] No such file or directory: "
        f"'{tmp_path}/absent.yaml'"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n  w: {url: x\nbroker: 1\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:3: not valid YAML: ")


def test_tab_indentation_says_to_use_spaces(tmp_path: Path) -> None:
    found = problems(tmp_path, "databases:\n\tw: {url: x}\n")

    assert len(found) == 1
    assert found[0].startswith("config.yaml:2: not valid YAML: ")
    assert found[0].endswith("indent with spaces, YAML does not allow tabs")


def test_duplicate_key_is_reported_with_both_lines(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  prefetch: 5\n  prefetch: 6\n")

    assert found == [
        "config.yaml:5: broker.prefetch: duplicate key, also set at line 4; "
        "YAML would silently keep only the last one, so remove one of them"
    ]


def test_empty_config_file_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "")

    assert found == [
        "config.yaml: expected settings such as 'databases:' and 'broker:' at the top level, "
        "found an empty file"
    ]


# --- value checks ---------------------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_close_name(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "brokr: {}\n")

    assert found == [
        "config.yaml:3: brokr: unknown key; did you mean 'broker'? "
        "(allowed: broker, databases, sources, mappings, state_dir, apply, retry, logging, "
        "metrics)"
    ]


def test_unknown_broker_key_suggests_the_close_name(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  hostz: [a:1]\n")

    assert found == [
        "config.yaml:4: broker.hostz: unknown key; did you mean 'hosts'? (allowed: hosts, "
        "user, password, password_file, tls, heartbeat_ms, connect_timeout_s, receipt_timeout_s, "
        "prefetch, queue_prefix, dead_letter_queue, publish_batch_events)"
    ]


def test_non_number_prefetch_says_what_is_allowed(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  prefetch: lots\n")

    assert found == [
        "config.yaml:4: broker.prefetch: expected a whole number from 1 to 65535, found 'lots'"
    ]


def test_out_of_range_and_boolean_whole_numbers_are_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  prefetch: 0\n  publish_batch_events: true\n")

    assert found == [
        "config.yaml:4: broker.prefetch: expected a whole number from 1 to 65535, found 0",
        "config.yaml:5: broker.publish_batch_events: expected a whole number from 1 to 100000, "
        "found true",
    ]


def test_timeouts_must_be_positive_numbers(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  connect_timeout_s: -1\n")

    assert found == [
        "config.yaml:4: broker.connect_timeout_s: expected a number of seconds above 0, "
        "such as 10 or 2.5, found -1"
    ]


def test_bad_hosts_entry_says_host_port(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  hosts:\n    - mq:61613\n    - mq\n")

    assert found == [
        "config.yaml:6: broker.hosts[1]: expected 'host:port' such as '127.0.0.1:61613', found 'mq'"
    ]


def test_empty_hosts_list_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  hosts: []\n")

    assert found == [
        "config.yaml:4: broker.hosts: expected a list of 'host:port' such as "
        "['127.0.0.1:61613'], found an empty list"
    ]


def test_queue_names_must_start_with_queue(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  dead_letter_queue: DLQ\n")

    assert found == [
        "config.yaml:4: broker.dead_letter_queue: expected a queue name starting with /queue/, "
        "such as /queue/syncd.DLQ, found 'DLQ'"
    ]


def test_number_as_user_suggests_quotes(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  user: 1234\n")

    assert found == [
        "config.yaml:4: broker.user: expected non-empty text; put it in quotes, found 1234"
    ]


def test_password_mistake_does_not_echo_the_value(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "broker:\n  password: 123456\n")

    assert found == [
        "config.yaml:4: broker.password: expected non-empty text; put it in quotes, found a number"
    ]


def test_unknown_log_level_lists_the_allowed_ones(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "logging:\n  level: loud\n")

    assert found == [
        "config.yaml:4: logging.level: expected one of debug, info, warning, error, found 'loud'"
    ]


def test_bad_positions_table_name_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "apply:\n  positions_table: 'my table'\n")

    assert found == [
        "config.yaml:4: apply.positions_table: expected a table name such as syncd_positions "
        "or schema.syncd_positions (letters, digits and _), found 'my table'"
    ]


def test_max_backoff_below_initial_backoff_is_reported(tmp_path: Path) -> None:
    found = problems(
        tmp_path, MINIMAL + "retry:\n  initial_backoff_ms: 500\n  max_backoff_ms: 100\n"
    )

    assert found == [
        "config.yaml:5: retry.max_backoff_ms: 100 is below retry.initial_backoff_ms (500); "
        "make it at least as large"
    ]


def test_section_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "retry: 3\n")

    assert found == [
        "config.yaml:3: retry: expected a mapping of settings "
        "(attempts, initial_backoff_ms, max_backoff_ms, max_elapsed_s), found 3"
    ]


def test_every_problem_is_reported_at_once_from_the_top_down(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        logging: {level: loud}
        broker:
          prefetch: lots
          hostz: []
        databases:
          warehouse: {url: "sqlite://", pasword: x}
        """,
    )

    assert [line.split(": ")[0:2] for line in found] == [
        ["config.yaml:1", "logging.level"],
        ["config.yaml:3", "broker.prefetch"],
        ["config.yaml:4", "broker.hostz"],
        ["config.yaml:6", "databases.warehouse.pasword"],
    ]


def test_unavailable_placeholder_defaults_to_debeziums_and_may_be_set(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).apply.unavailable_placeholder == "__debezium_unavailable_value"
    config = load(tmp_path, MINIMAL + "apply:\n  unavailable_placeholder: '<toast>'\n")
    assert config.apply.unavailable_placeholder == "<toast>"


def test_empty_unavailable_placeholder_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "apply:\n  unavailable_placeholder: ''\n")
    assert len(found) == 1 and "unavailable_placeholder" in found[0]


def test_the_queues_of_atomic_sources_are_consumed_exclusively(tmp_path: Path) -> None:
    text = SOURCES.replace("capture: logical", "capture: logical\n    transactions: atomic")
    text += "  shop:\n    url: sqlite:///shop.db\n    capture: outbox\n    tables: [items]\n"
    config = load(tmp_path, MINIMAL + text)
    assert config.exclusive_queues() == {"/queue/syncd.crm"}
    assert load(tmp_path, MINIMAL + SOURCES).exclusive_queues() == frozenset()
