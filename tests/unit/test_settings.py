import re
from ipaddress import ip_network
from pathlib import Path

import pytest

from pipeline.domain.config import ConfigError
from pipeline.settings import (
    SOURCES,
    DeadLetterSettings,
    MtaSettings,
    Settings,
    StreamSettings,
    WireSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "patchgate.example.toml"
OPERATIONS = ROOT / "docs" / "operations.md"


def test_defaults(tmp_path):
    settings = load_settings(None, environ={})
    assert settings == Settings()
    assert settings.clickhouse_dsn == f"chdb://{Path('.patchgate/clickhouse').resolve()}"
    assert settings.stream == StreamSettings(source_idle_seconds=3600.0)
    assert settings.dead_letters == DeadLetterSettings(max_ratio=0.1, max_consecutive=1000)
    assert settings.mta == MtaSettings(idle_timeout_seconds=300.0, max_connections=1000, client_networks=None)


def test_file_then_environment(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "kafka:9092"\npartitions = 8\n'
        '[clickhouse]\nurl = "http://default:@clickhouse:8123/default"\n'
        '[policy]\nbuild_window_days = 3\n'
    )
    settings = load_settings(config, environ={"PATCHGATE_PARTITIONS": "2", "PATCHGATE_TOPIC_PREFIX": "t1."})
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.partitions == 2
    assert settings.clickhouse_dsn == "http://default:@clickhouse:8123/default"
    assert settings.policy.build_window_days == 3
    assert settings.topic("mail.decisions") == "t1.mail.decisions"


def test_the_example_file_holds_the_defaults():
    assert load_settings(EXAMPLE, environ={}) == Settings()


def settings_table(guide: str) -> dict[str, str]:
    """Each variable of the settings table in docs/operations.md -> the file keys cell of its row."""
    rows = {}
    for line in guide.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            for variable in re.findall(r"`([A-Z_]+)`", cells[0]):
                rows[variable] = cells[1]
    return rows


def test_the_example_file_and_the_operations_guide_name_every_setting():
    example, table = EXAMPLE.read_text(), settings_table(OPERATIONS.read_text())
    for source in SOURCES:
        assert re.search(rf"^\[{source.section}\]$", example, re.MULTILINE), source.section
        assert re.search(rf"^#? ?{source.key} = ", example, re.MULTILINE), source.key
        assert source.env in table, f"{source.env} has no row in the settings table of {OPERATIONS.name}"
        assert f"`{source.section}.{source.key}`" in table[source.env], source.env


def test_the_catalog_path_comes_from_the_file_or_the_environment(tmp_path):
    assert Settings(data_dir=tmp_path).catalog_file == tmp_path / "catalog" / "exchange_builds.csv"
    config = tmp_path / "patchgate.toml"
    config.write_text('[catalog]\npath = "/srv/patchgate/exchange_builds.csv"\n')
    assert load_settings(config, environ={}).catalog_file == Path("/srv/patchgate/exchange_builds.csv")
    settings = load_settings(config, environ={"PATCHGATE_CATALOG": "/etc/patchgate/builds.csv"})
    assert settings.catalog_file == Path("/etc/patchgate/builds.csv")


def test_stream_and_dead_letter_settings_come_from_the_file_or_the_environment(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text("[stream]\nsource_idle_seconds = 0\n[dead_letters]\nmax_ratio = 1\nmax_consecutive = 50\n")
    settings = load_settings(config, environ={})
    assert settings.stream.source_idle_seconds == 0.0
    assert settings.dead_letters == DeadLetterSettings(max_ratio=1.0, max_consecutive=50)
    environ = {"PATCHGATE_SOURCE_IDLE_SECONDS": "90.5", "PATCHGATE_DLQ_MAX_RATIO": "0.25",
               "PATCHGATE_DLQ_MAX_CONSECUTIVE": "7"}
    settings = load_settings(config, environ=environ)
    assert settings.stream.source_idle_seconds == 90.5
    assert settings.dead_letters == DeadLetterSettings(max_ratio=0.25, max_consecutive=7)


def test_mta_settings_come_from_the_file_or_the_environment(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text('[mta]\nidle_timeout_seconds = 60\nmax_connections = 200\n'
                      'client_networks = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]\n')
    assert load_settings(config, environ={}).mta == MtaSettings(
        idle_timeout_seconds=60.0, max_connections=200,
        client_networks=(ip_network("192.0.2.0/24"), ip_network("2001:db8::/32"), ip_network("198.51.100.7/32")))
    environ = {"PATCHGATE_MTA_IDLE_TIMEOUT": "2.5", "PATCHGATE_MTA_MAX_CONNECTIONS": "5000",
               "PATCHGATE_MTA_CLIENT_NETWORKS": "10.0.0.0/8, ::1/128"}
    assert load_settings(config, environ=environ).mta == MtaSettings(
        idle_timeout_seconds=2.5, max_connections=5000, client_networks=(ip_network("10.0.0.0/8"), ip_network("::1")))
    # One string in the file, as in the environment.
    config.write_text('[mta]\nclient_networks = "127.0.0.0/8"\n')
    assert load_settings(config, environ={}).mta.client_networks == (ip_network("127.0.0.0/8"),)


def test_values_of_every_accepted_shape(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text('[kafka]\nbootstrap_servers = ["kafka-1:9092", "[::1]:9093"]\n'
                      '[clickhouse]\nurl = "https://reader:secret@clickhouse.example:8443/patchgate"\n'
                      '[worker]\nweb_host = "::"\n')
    settings = load_settings(config, environ={"PATCHGATE_TOPIC_PREFIX": "", "PATCHGATE_PARTITIONS": ""})
    assert settings.bootstrap_servers == "kafka-1:9092,[::1]:9093"
    assert settings.clickhouse_url == "https://reader:secret@clickhouse.example:8443/patchgate"
    assert settings.web_host == "::"
    # An empty variable counts as unset.
    assert (settings.topic_prefix, settings.partitions) == ("", 12)
    settings = load_settings(None, environ={"KAFKA_BOOTSTRAP_SERVERS": "a.example:9092, b.example:9092",
                                            "CLICKHOUSE_URL": "chdb:///var/lib/patchgate/clickhouse"})
    assert settings.bootstrap_servers == "a.example:9092,b.example:9092"
    assert settings.clickhouse_dsn == "chdb:///var/lib/patchgate/clickhouse"


def test_web_tokens_and_host_names_come_from_the_file_or_the_environment(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text('[worker]\nweb_token = "operator-token-0123456789"\nweb_view_token = "viewer-token-0123456789"\n'
                      'web_hostnames = ["Report.Example", "10.0.0.5", "::1"]\n')
    settings = load_settings(config, environ={})
    assert (settings.web_token, settings.web_view_token) == ("operator-token-0123456789", "viewer-token-0123456789")
    assert settings.web_hostnames == ("report.example", "10.0.0.5", "::1")
    settings = load_settings(config, environ={"PATCHGATE_WEB_VIEW_TOKEN": "another-viewer-token-0123",
                                              "PATCHGATE_WEB_HOSTNAMES": "sink.example, reports.example"})
    assert settings.web_view_token == "another-viewer-token-0123"
    assert settings.web_hostnames == ("sink.example", "reports.example")


SECTIONS = "kafka, clickhouse, worker, catalog, stream, dead_letters, mta, policy, formats, notify"
POLICY_KEYS = ("stages, vulnerable_products, baselines, enforce_products, exemptions, trusted_receivers, "
               "internal_hops, scope, build_window_days, pause_budget_days, pauses, max_exemption_days, report_only, "
               "report_only_orgs")
TOPIC_CHARACTERS = "letters, digits, '.', '_' or '-' (Kafka's topic name characters)"
CLICKHOUSE_URL = "chdb:///path (the embedded engine) or an http(s)://host... URL of a server"
HOSTNAMES = "host names or IP addresses, several separated by commas"


@pytest.mark.parametrize(("toml", "message"), [
    # unknown sections and keys
    ("[kafk]\npartitions = 8\n", f"kafk is not a settings section (known: {SECTIONS})"),
    ("partitions = 8\n", f"partitions is not a settings section (known: {SECTIONS})"),
    ("[kafka]\npartitons = 8\n",
     "kafka.partitons is not a setting (known: bootstrap_servers, partitions, topic_prefix, app_id, security_protocol, "
     "sasl_mechanism, sasl_username, sasl_password, sasl_password_file, ssl_cafile, ssl_certfile, ssl_keyfile, "
     "replication_factor, min_insync_replicas, wire_format, schema_registry_url, schema_registry_username, "
     "schema_registry_password, schema_registry_password_file)"),
    ("[worker]\nport = 6066\n",
     "worker.port is not a setting (known: data_dir, web_host, web_port, web_token, web_view_token, web_hostnames, "
     "session_timeout_seconds, standby_replicas)"),
    ("[dead_letters]\nmax_rate = 0.5\n", "dead_letters.max_rate is not a setting (known: max_ratio, max_consecutive)"),
    ("[mta]\nmax_idle = 300\n",
     "mta.max_idle is not a setting (known: idle_timeout_seconds, max_connections, client_networks)"),
    ("[policy]\nbuild_windw_days = 3\n", f"policy.build_windw_days is not a setting (known: {POLICY_KEYS})"),
    ("[policy.scope]\nconnector = []\n",
     "policy.scope.connector is not a setting (known: connectors, client_networks, tls_peers)"),
    ("[formats]\ndate_order = 'auto'\n",
     "formats.date_order is not a setting (known: exo_date_order, max_line_bytes, syslog_timezone)"),
    # wrong types
    ('kafka = "kafka:9092"\n', "kafka must be a table, got 'kafka:9092'"),
    ('[kafka]\npartitions = "8"\n', "kafka.partitions must be an integer from 1 to 10000, got '8'"),
    ("[kafka]\npartitions = 8.0\n", "kafka.partitions must be an integer from 1 to 10000, got 8.0"),
    ("[kafka]\nbootstrap_servers = 9092\n",
     "kafka.bootstrap_servers must be host:port, several separated by commas, got 9092"),
    ("[worker]\nweb_port = true\n", "worker.web_port must be an integer from 1 to 65535, got True"),
    ("[worker]\ndata_dir = 5\n", "worker.data_dir must be a path, got 5"),
    ("[worker]\nweb_view_token = 1234567890123456789\n",
     "worker.web_view_token must be at least 16 characters without spaces, got a value of type int"),
    ("[worker]\nweb_hostnames = 6066\n", f"worker.web_hostnames must be {HOSTNAMES}, got 6066"),
    ("[catalog]\npath = []\n", "catalog.path must be a path, got []"),
    ('[stream]\nsource_idle_seconds = "1h"\n', "stream.source_idle_seconds must be a number >= 0, got '1h'"),
    ("[dead_letters]\nmax_consecutive = 10.0\n", "dead_letters.max_consecutive must be an integer >= 1, got 10.0"),
    ('[policy]\nstages = "none"\n', "policy.stages must be a list of tables, got 'none'"),
    ("[mta]\nclient_networks = 10\n", "mta.client_networks must be a list of strings, got 10"),
    # out of range, or not of the shape the key needs
    ("[kafka]\npartitions = 0\n", "kafka.partitions must be an integer from 1 to 10000, got 0"),
    ('[kafka]\nbootstrap_servers = "kafka"\n',
     "kafka.bootstrap_servers must be host:port, several separated by commas, got 'kafka'"),
    ('[kafka]\nbootstrap_servers = ["kafka:9092", "kafka-2:70000"]\n',
     "kafka.bootstrap_servers must be host:port, several separated by commas, got ['kafka:9092', 'kafka-2:70000']"),
    ('[kafka]\ntopic_prefix = "team a/"\n',
     f"kafka.topic_prefix must be at most 200 {TOPIC_CHARACTERS}, got 'team a/'"),
    ('[kafka]\napp_id = ""\n',
     f"kafka.app_id must be 1 to 200 {TOPIC_CHARACTERS}, got ''"),
    ('[clickhouse]\nurl = "clickhouse:8123"\n', f"clickhouse.url must be {CLICKHOUSE_URL}, got 'clickhouse:8123'"),
    ('[clickhouse]\nurl = "chdb://"\n', f"clickhouse.url must be {CLICKHOUSE_URL}, got 'chdb://'"),
    ('[clickhouse]\nurl = "http://clickhouse:81234/db"\n',
     f"clickhouse.url must be {CLICKHOUSE_URL}, got 'http://clickhouse:81234/db'"),
    ("[worker]\nweb_port = 70000\n", "worker.web_port must be an integer from 1 to 65535, got 70000"),
    ('[worker]\nweb_host = "my host"\n', "worker.web_host must be a host name or an IP address, got 'my host'"),
    ('[worker]\ndata_dir = ""\n', "worker.data_dir must be a path, got ''"),
    # A token that does not read is described, never shown.
    ('[worker]\nweb_token = "s3cret"\n',
     "worker.web_token must be at least 16 characters without spaces, got 6 characters"),
    ('[worker]\nweb_view_token = "a viewer token with spaces"\n',
     "worker.web_view_token must be at least 16 characters without spaces, got 26 characters with white space"),
    ('[worker]\nweb_hostnames = ["report.example", "report.example:6066"]\n',
     f"worker.web_hostnames must be {HOSTNAMES}, got ['report.example', 'report.example:6066']"),
    ('[worker]\nweb_token = "the-same-token-for-all"\nweb_view_token = "the-same-token-for-all"\n',
     "worker.web_view_token is the same as worker.web_token: viewers would hold the operator's token; "
     "give them another one"),
    ("[stream]\nsource_idle_seconds = -1\n", "stream.source_idle_seconds must be a number >= 0, got -1"),
    ("[stream]\nsource_idle_seconds = inf\n", "stream.source_idle_seconds must be a number >= 0, got inf"),
    ("[dead_letters]\nmax_ratio = 0\n", "dead_letters.max_ratio must be a number > 0 and <= 1, got 0"),
    ("[dead_letters]\nmax_ratio = 1.5\n", "dead_letters.max_ratio must be a number > 0 and <= 1, got 1.5"),
    ("[dead_letters]\nmax_consecutive = 0\n", "dead_letters.max_consecutive must be an integer >= 1, got 0"),
    ("[mta]\nidle_timeout_seconds = 0\n", "mta.idle_timeout_seconds must be a number > 0, got 0"),
    ("[mta]\nmax_connections = 0\n", "mta.max_connections must be an integer from 1 to 1000000, got 0"),
    ("[mta]\nclient_networks = []\n",
     "mta.client_networks is empty: no MTA could connect (leave it out to let any client connect)"),
    ('[mta]\nclient_networks = ["192.0.2.0/24", "192.0.2.0/33"]\n',
     "mta.client_networks[1] must be a CIDR range like 192.0.2.0/24, got '192.0.2.0/33'"),
    ("[policy]\npauses = [{ org = 'contoso.example', start = 2026-03-01, days = -3 }]\n",
     "policy.pauses[0].days must be an integer >= 1, got -3"),
    ('[formats]\nexo_date_order = "dmy"\n',
     "formats.exo_date_order must be one of auto, month-first, day-first, got 'dmy'"),
])
def test_a_file_setting_that_does_not_read_names_its_key_and_the_problem(tmp_path, toml, message):
    config = tmp_path / "patchgate.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_settings(config, environ={})
    assert str(error.value) == message


@pytest.mark.parametrize(("environ", "message"), [
    ({"PATCHGATE_PARTITIONS": "abc"}, "PATCHGATE_PARTITIONS must be an integer from 1 to 10000, got 'abc'"),
    ({"PATCHGATE_PARTITIONS": "0"}, "PATCHGATE_PARTITIONS must be an integer from 1 to 10000, got 0"),
    ({"PATCHGATE_WEB_PORT": "6066.5"}, "PATCHGATE_WEB_PORT must be an integer from 1 to 65535, got '6066.5'"),
    ({"PATCHGATE_WEB_PORT": "65536"}, "PATCHGATE_WEB_PORT must be an integer from 1 to 65535, got 65536"),
    ({"PATCHGATE_WEB_HOST": "host name"}, "PATCHGATE_WEB_HOST must be a host name or an IP address, got 'host name'"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092,"},
     "KAFKA_BOOTSTRAP_SERVERS must be host:port, several separated by commas, got 'kafka:9092,'"),
    ({"PATCHGATE_TOPIC_PREFIX": "a b."},
     f"PATCHGATE_TOPIC_PREFIX must be at most 200 {TOPIC_CHARACTERS}, got 'a b.'"),
    ({"PATCHGATE_APP_ID": "group/1"},
     f"PATCHGATE_APP_ID must be 1 to 200 {TOPIC_CHARACTERS}, got 'group/1'"),
    # The password stays out of the message.
    ({"CLICKHOUSE_URL": "ftp://reader:secret@clickhouse/patchgate"},
     f"CLICKHOUSE_URL must be {CLICKHOUSE_URL}, got 'ftp://reader:***@clickhouse/patchgate'"),
    ({"PATCHGATE_WEB_VIEW_TOKEN": "short"},
     "PATCHGATE_WEB_VIEW_TOKEN must be at least 16 characters without spaces, got 5 characters"),
    ({"PATCHGATE_WEB_HOSTNAMES": "report.example,,sink.example"},
     f"PATCHGATE_WEB_HOSTNAMES must be {HOSTNAMES}, got 'report.example,,sink.example'"),
    ({"PATCHGATE_WEB_HOSTNAMES": "report.example/x"},
     f"PATCHGATE_WEB_HOSTNAMES must be {HOSTNAMES}, got 'report.example/x'"),
    ({"PATCHGATE_WEB_TOKEN": "0123456789abcdefgh", "PATCHGATE_WEB_VIEW_TOKEN": "0123456789abcdefgh"},
     "PATCHGATE_WEB_VIEW_TOKEN is the same as PATCHGATE_WEB_TOKEN: viewers would hold the operator's token; "
     "give them another one"),
    ({"PATCHGATE_SOURCE_IDLE_SECONDS": "soon"}, "PATCHGATE_SOURCE_IDLE_SECONDS must be a number >= 0, got 'soon'"),
    ({"PATCHGATE_SOURCE_IDLE_SECONDS": "-1"}, "PATCHGATE_SOURCE_IDLE_SECONDS must be a number >= 0, got -1.0"),
    ({"PATCHGATE_DLQ_MAX_RATIO": "2"}, "PATCHGATE_DLQ_MAX_RATIO must be a number > 0 and <= 1, got 2.0"),
    ({"PATCHGATE_DLQ_MAX_RATIO": "nan"}, "PATCHGATE_DLQ_MAX_RATIO must be a number > 0 and <= 1, got nan"),
    ({"PATCHGATE_DLQ_MAX_CONSECUTIVE": "0"}, "PATCHGATE_DLQ_MAX_CONSECUTIVE must be an integer >= 1, got 0"),
    ({"PATCHGATE_DLQ_MAX_CONSECUTIVE": "many"}, "PATCHGATE_DLQ_MAX_CONSECUTIVE must be an integer >= 1, got 'many'"),
    ({"PATCHGATE_MTA_IDLE_TIMEOUT": "-5"}, "PATCHGATE_MTA_IDLE_TIMEOUT must be a number > 0, got -5.0"),
    ({"PATCHGATE_MTA_IDLE_TIMEOUT": "5m"}, "PATCHGATE_MTA_IDLE_TIMEOUT must be a number > 0, got '5m'"),
    ({"PATCHGATE_MTA_MAX_CONNECTIONS": "1e3"},
     "PATCHGATE_MTA_MAX_CONNECTIONS must be an integer from 1 to 1000000, got '1e3'"),
    ({"PATCHGATE_MTA_CLIENT_NETWORKS": "10.0.0.0/8,,192.0.2.0/24"},
     "PATCHGATE_MTA_CLIENT_NETWORKS[1] must be a non-empty string, got ''"),
    ({"PATCHGATE_MTA_CLIENT_NETWORKS": "mx.example.net"},
     "PATCHGATE_MTA_CLIENT_NETWORKS[0] must be a CIDR range like 192.0.2.0/24, got 'mx.example.net'"),
    ({"PATCHGATE_WIRE_FORMAT": "avro"}, "PATCHGATE_WIRE_FORMAT must be one of single-object, confluent, got 'avro'"),
    ({"PATCHGATE_WIRE_FORMAT": "confluent"},
     "PATCHGATE_WIRE_FORMAT is confluent, which needs a schema registry: PATCHGATE_SCHEMA_REGISTRY_URL "
     "(kafka.schema_registry_url) is not set"),
    ({"PATCHGATE_SCHEMA_REGISTRY_URL": "registry:8081"},
     "PATCHGATE_SCHEMA_REGISTRY_URL must be an http(s)://host[:port][/path] URL, got 'registry:8081'"),
    ({"PATCHGATE_SCHEMA_REGISTRY_URL": "https://reader:secret@registry.example"},
     "PATCHGATE_SCHEMA_REGISTRY_URL must not hold credentials: set PATCHGATE_SCHEMA_REGISTRY_USERNAME and "
     "PATCHGATE_SCHEMA_REGISTRY_PASSWORD(_FILE)"),
    ({"PATCHGATE_SCHEMA_REGISTRY_USERNAME": "patchgate"},
     "PATCHGATE_SCHEMA_REGISTRY_USERNAME is set without PATCHGATE_SCHEMA_REGISTRY_URL (kafka.schema_registry_url)"),
    ({"PATCHGATE_SCHEMA_REGISTRY_URL": "https://registry.example", "PATCHGATE_SCHEMA_REGISTRY_PASSWORD": "pw"},
     "PATCHGATE_SCHEMA_REGISTRY_PASSWORD needs both a registry username and a password (or password file)"),
    ({"PATCHGATE_SCHEMA_REGISTRY_URL": "http://registry.example:8081", "PATCHGATE_SCHEMA_REGISTRY_USERNAME": "u",
      "PATCHGATE_SCHEMA_REGISTRY_PASSWORD": "pw"},
     "PATCHGATE_SCHEMA_REGISTRY_URL is plain http beyond loopback: the registry password would cross the network "
     "in clear text; use https"),
])
def test_an_environment_variable_that_does_not_read_names_itself_and_the_problem(environ, message):
    with pytest.raises(ConfigError) as error:
        load_settings(None, environ=environ)
    assert str(error.value) == message


def test_the_wire_settings_come_from_the_file_or_the_environment(tmp_path):
    secret = tmp_path / "registry-password"
    secret.write_text("from-a-file\n")
    config = tmp_path / "patchgate.toml"
    config.write_text('[kafka]\nwire_format = "confluent"\nschema_registry_url = "https://registry.example/sr/"\n'
                      f'schema_registry_username = "patchgate"\nschema_registry_password_file = "{secret}"\n')
    wire = load_settings(config, environ={}).wire
    assert wire == WireSettings("confluent", "https://registry.example/sr", "patchgate", "from-a-file")
    assert "from-a-file" not in repr(wire)
    loopback = load_settings(None, environ={"PATCHGATE_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081",
                                            "PATCHGATE_SCHEMA_REGISTRY_USERNAME": "u",
                                            "PATCHGATE_SCHEMA_REGISTRY_PASSWORD": "pw"}).wire
    assert (loopback.format, loopback.registry_password) == ("single-object", "pw")


def test_a_bad_file_value_is_an_error_also_where_the_environment_overrides_it(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text('[kafka]\npartitions = "8"\n')
    with pytest.raises(ConfigError, match=r"^kafka\.partitions must be an integer"):
        load_settings(config, environ={"PATCHGATE_PARTITIONS": "8"})


def test_a_settings_file_that_cannot_be_read_or_is_not_toml(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as error:
        load_settings(None, environ={"PATCHGATE_CONFIG": str(missing)})
    assert str(error.value) == f"{missing} cannot be read: No such file or directory"
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka]\npartitions = \n")
    with pytest.raises(ConfigError) as error:
        load_settings(broken, environ={})
    assert str(error.value) == f"{broken} is not a TOML file: Invalid value (at line 2, column 14)"


def test_the_syslog_time_zone_is_an_iana_name_from_the_time_zone_database(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text('[formats]\nsyslog_timezone = "Europe/Berlin"\n')
    assert str(load_settings(config, environ={}).formats.syslog_zone) == "Europe/Berlin"
    config.write_text('[formats]\nsyslog_timezone = "Europe/Springfield"\n')
    with pytest.raises(ConfigError, match=re.escape("formats.syslog_timezone must be an IANA time zone like "
                                                    "Europe/Berlin, got 'Europe/Springfield'")):
        load_settings(config, environ={})
