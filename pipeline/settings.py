"""Runtime settings: a TOML file (optional) overridden by environment variables.

    [kafka]         bootstrap_servers    host:port, several separated by commas (or a list of them)
                    security_protocol    PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
                    sasl_mechanism       PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
                    sasl_username, sasl_password (or sasl_password_file)
                    ssl_cafile           PEM file of the CAs to trust (default: the system's)
                    ssl_certfile, ssl_keyfile   client certificate and key, for mutual TLS
                    replication_factor   replicas of every topic the project creates (default: 3, or
                                         the number of brokers when the cluster has fewer)
                    min_insync_replicas  their min.insync.replicas (default: 2 from 3 replicas, else 1)
                    partitions           1 to 10000
                    topic_prefix         letters, digits, ".", "_" and "-" (Kafka's topic name characters)
                    app_id               the same, not empty: the Faust app id and consumer group
                    wire_format          single-object (default) or confluent: how the Avro records
                                         the project writes are framed (pipeline.contracts.wire)
                    schema_registry_url  http(s) URL of the schema registry; confluent needs it, and
                                         any reader of Confluent-framed records it did not write
                    schema_registry_username, schema_registry_password (or
                    schema_registry_password_file)   basic auth; https, or http on loopback only.
                                         TLS to it trusts what the Kafka client does (ssl_cafile)
    [clickhouse]    url                  "chdb:///dir" embedded, or http(s)://... for a server
    [worker]        data_dir, web_host, web_port (1 to 65535)
                    web_token            the operator's token: control commands over HTTP need it; it
                                         also reads what web_view_token reads
                    web_view_token       the viewers' token: on a web port bound beyond loopback the
                                         report, its API, /servers/*, /metrics and SQL need it (or
                                         web_token); both at least 16 characters without spaces
                    web_hostnames        the names (or addresses) besides the bind address that
                                         clients may put in the Host header (see pipeline.web.access)
                    session_timeout_seconds  how long a worker that stopped answering (kill -9, a
                                         lost host) keeps its partitions before the group hands them
                                         to another (6 to 300, default 15; 6 s is the brokers'
                                         default group.min.session.timeout.ms)
                    standby_replicas     copies of each table partition other workers keep up to date
                                         so one can take over at once (0 to 10, default 1)
    [catalog]       path                 the newer build list `patchgate catalog update` writes
    [stream]        source_idle_seconds  how long in event time a source may stay silent before the
                                         stream flushes what it still holds of it, as `evaluate`
                                         does at the end of a file (>= 0, default 3600; 0: never)
    [dead_letters]  max_ratio            the worker stops when more than this share of the records an
                                         agent reads from the pipeline's own topics do not decode
                                         (0 < x <= 1, default 0.1; bad log lines do not count)
                    max_consecutive      ... or more than this many in a row (>= 1, default 1000)
    [mta]           idle_timeout_seconds `patchgate mta` and `patchgate milter` close a connection
                                         that sends no request line (milter: packet) for this long
                                         (> 0, default 300)
                    max_connections      past this many open connections they close new ones at
                                         once (1 to 1000000, default 1000)
                    client_networks      CIDR ranges the clients must connect from, a list (or
                                         separated by commas); default any
    [policy]        see pipeline.domain.config.PolicyConfig
    [formats]       see pipeline.domain.config.FormatConfig
    [notify]        see pipeline.domain.notify_config.NotifyConfig

Environment: KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME,
KAFKA_SASL_PASSWORD, KAFKA_SASL_PASSWORD_FILE, KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE,
PATCHGATE_REPLICATION_FACTOR, PATCHGATE_MIN_INSYNC_REPLICAS, PATCHGATE_PARTITIONS, PATCHGATE_TOPIC_PREFIX,
PATCHGATE_APP_ID, PATCHGATE_WIRE_FORMAT, PATCHGATE_SCHEMA_REGISTRY_URL, PATCHGATE_SCHEMA_REGISTRY_USERNAME,
PATCHGATE_SCHEMA_REGISTRY_PASSWORD, PATCHGATE_SCHEMA_REGISTRY_PASSWORD_FILE,
CLICKHOUSE_URL, PATCHGATE_DATA_DIR, PATCHGATE_WEB_HOST, PATCHGATE_WEB_PORT, PATCHGATE_WEB_TOKEN,
PATCHGATE_WEB_VIEW_TOKEN, PATCHGATE_WEB_HOSTNAMES (comma-separated), PATCHGATE_STANDBY_REPLICAS,
PATCHGATE_SESSION_TIMEOUT, PATCHGATE_CATALOG,
PATCHGATE_SOURCE_IDLE_SECONDS, PATCHGATE_DLQ_MAX_RATIO, PATCHGATE_DLQ_MAX_CONSECUTIVE,
PATCHGATE_MTA_IDLE_TIMEOUT, PATCHGATE_MTA_MAX_CONNECTIONS, PATCHGATE_MTA_CLIENT_NETWORKS, and
PATCHGATE_CONFIG (the file). An empty variable counts as unset.

Every value is checked at start, the file's and the environment's: a wrong type, a value out of
range, an unknown section or key raises ConfigError, one line naming the key as written
(`kafka.partitions`, `PATCHGATE_PARTITIONS`) and the problem.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.domain.config import (
    ConfigError,
    FormatConfig,
    PolicyConfig,
    integer,
    network,
    number,
    one_of,
    strings,
    table,
    text,
)
from pipeline.domain.hostnames import is_loopback
from pipeline.domain.notify_config import NotifyConfig
from pipeline.domain.scope import IPNetwork
from pipeline.kafka_connection import KafkaConnection, checked, mechanism, password_from_file, protocol, readable_file


@dataclass(frozen=True)
class StreamSettings:
    # Event-time seconds a source may stay silent before the stream flushes what it holds (0: never).
    source_idle_seconds: float = 3600.0


@dataclass(frozen=True)
class DeadLetterSettings:
    """Above either limit the worker stops instead of dead-lettering on."""

    max_ratio: float = 0.1
    max_consecutive: int = 1000


@dataclass(frozen=True)
class MtaSettings:
    """What `patchgate mta` and `patchgate milter` let their clients hold (pipeline.edges.connection_guard)."""

    # As long as Postfix keeps an idle policy connection (smtpd_policy_service_max_idle).
    idle_timeout_seconds: float = 300.0
    max_connections: int = 1000
    # None: any client that reaches the port (by default it listens on loopback only).
    client_networks: tuple[IPNetwork, ...] | None = None


WIRE_FORMATS = ("single-object", "confluent")


@dataclass(frozen=True)
class WireSettings:
    """How the Avro records the project writes are framed, and the schema registry Confluent framing
    needs. Readers take both framings whatever `format` says (pipeline.contracts.wire)."""

    format: str = WIRE_FORMATS[0]
    registry_url: str | None = None
    registry_username: str | None = None
    registry_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    wire: WireSettings = WireSettings()
    # None: decided from the cluster when topics are created (see contracts.topics.replication).
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    # Room for several workers: a partition is the unit Faust hands to one of them.
    partitions: int = 12
    topic_prefix: str = ""
    app_id: str = "patchgate"
    clickhouse_url: str = ""
    data_dir: Path = Path(".patchgate")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_token: str | None = None
    web_view_token: str | None = None
    web_hostnames: tuple[str, ...] = ()
    standby_replicas: int = 1
    session_timeout_seconds: float = 15.0
    catalog_path: Path | None = None
    stream: StreamSettings = StreamSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    mta: MtaSettings = MtaSettings()
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    formats: FormatConfig = field(default_factory=FormatConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def catalog_file(self) -> Path:
        """Where the newer build list is written and read (it need not exist)."""
        return self.catalog_path or self.data_dir / "catalog" / "exchange_builds.csv"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


# Kafka topic names take these characters, up to 249 of them; the pipeline's own names (and Faust's
# "<app id>-<table>-changelog") follow the prefix and the app id.
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,200}")
_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
_TOPIC_CHARACTERS = "letters, digits, '.', '_' or '-' (Kafka's topic name characters)"
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})")
_CLICKHOUSE_SHAPE = "chdb:///path (the embedded engine) or an http(s)://host... URL of a server"
_TOKEN = re.compile(r"\S{16,}")
_TOKEN_SHAPE = "at least 16 characters without spaces"
_HOSTNAMES_SHAPE = "host names or IP addresses, several separated by commas"
_PASSWORD = re.compile(r"(//[^/@:]*):[^/@]*@")


def _listed(value: Any) -> Any:
    """A list as the file gives it, or the environment's text of entries separated by commas."""
    return [entry.strip() for entry in value.split(",")] if isinstance(value, str) else value


def _bootstrap_servers(value: Any, key: str) -> str:
    entries = _listed(value)
    if isinstance(entries, list) and entries and all(isinstance(entry, str) for entry in entries):
        found = [_HOST_PORT.fullmatch(entry) for entry in entries]
        if all(match and 1 <= int(match["port"]) <= 65535 for match in found):
            return ",".join(entries)
    raise ConfigError(key, f"must be host:port, several separated by commas, got {value!r}")


def _clickhouse_url(value: Any, key: str) -> str:
    url = text(value, key, shape=_CLICKHOUSE_SHAPE)
    if (url.startswith("chdb://") and url.removeprefix("chdb://")) or _is_server_url(url):
        return url
    raise ConfigError(key, f"must be {_CLICKHOUSE_SHAPE}, got {_without_password(url)!r}")


def _registry_url(value: Any, key: str) -> str:
    url = text(value, key, shape="an http(s):// URL")
    parts = urlsplit(url)
    if not _is_server_url(url) or parts.query or parts.fragment:
        raise ConfigError(key, f"must be an http(s)://host[:port][/path] URL, got {_without_password(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(key, "must not hold credentials: set PATCHGATE_SCHEMA_REGISTRY_USERNAME and "
                               "PATCHGATE_SCHEMA_REGISTRY_PASSWORD(_FILE)")
    return url.rstrip("/")


def _without_password(url: str) -> str:
    """The URL for a message: a password in it stays out."""
    return _PASSWORD.sub(r"\1:***@", url)


def _is_server_url(url: str) -> bool:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is no number, or above 65535
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def _host(value: Any, key: str) -> str:
    host = text(value, key, shape="a host name or an IP address")
    if _is_host(host):
        return host
    raise ConfigError(key, f"must be a host name or an IP address, got {value!r}")


def _client_networks(value: Any, key: str) -> tuple[IPNetwork, ...]:
    entries = _listed(value)
    networks = tuple(network(entry, f"{key}[{index}]", "a CIDR range like 192.0.2.0/24")
                     for index, entry in enumerate(strings(entries, key)))
    if not networks:
        raise ConfigError(key, "is empty: no MTA could connect (leave it out to let any client connect)")
    return networks


def _hostnames(value: Any, key: str) -> tuple[str, ...]:
    entries = _listed(value)
    if isinstance(entries, list) and all(isinstance(entry, str) and _is_host(entry) for entry in entries):
        return tuple(entry.lower() for entry in entries)
    raise ConfigError(key, f"must be {_HOSTNAMES_SHAPE}, got {value!r}")


def _is_host(name: str) -> bool:
    if _HOST_NAME.fullmatch(name):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _token(value: Any, key: str) -> str:
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    # A secret with a typo stays out of the message (and the logs): only its shape is said.
    if not isinstance(value, str):
        got = f"a value of type {type(value).__name__}"
    else:
        got = f"{len(value)} characters" + (" with white space" if re.search(r"\s", value) else "")
    raise ConfigError(key, f"must be {_TOKEN_SHAPE}, got {got}")


def _time_zone(name: str) -> tzinfo:
    """The zone of an IANA name from the system's time zone database (or the tzdata package)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(name) from exc


def _path(value: Any, key: str) -> Path:
    return Path(text(value, key, shape="a path"))


class Source(NamedTuple):
    env: str
    section: str
    key: str
    # The Settings field, or "<group>.<field>" inside stream, dead_letters, mta or kafka (the connection).
    field: str
    read: Callable[[Any, str], Any]
    # The environment's text becomes this before `read` checks it; text that does not convert is
    # handed on as it is, for `read` to name.
    env_type: type = str


SOURCES = (
    Source("KAFKA_BOOTSTRAP_SERVERS", "kafka", "bootstrap_servers", "bootstrap_servers", _bootstrap_servers),
    Source("PATCHGATE_PARTITIONS", "kafka", "partitions", "partitions", partial(integer, low=1, high=10_000), int),
    Source("PATCHGATE_TOPIC_PREFIX", "kafka", "topic_prefix", "topic_prefix",
           partial(text, pattern=_TOPIC_PREFIX, shape=f"at most 200 {_TOPIC_CHARACTERS}")),
    Source("PATCHGATE_APP_ID", "kafka", "app_id", "app_id",
           partial(text, pattern=_APP_ID, shape=f"1 to 200 {_TOPIC_CHARACTERS}")),
    Source("KAFKA_SECURITY_PROTOCOL", "kafka", "security_protocol", "kafka.security_protocol", protocol),
    Source("KAFKA_SASL_MECHANISM", "kafka", "sasl_mechanism", "kafka.sasl_mechanism", mechanism),
    Source("KAFKA_SASL_USERNAME", "kafka", "sasl_username", "kafka.sasl_username", text),
    Source("KAFKA_SASL_PASSWORD", "kafka", "sasl_password", "kafka.sasl_password", text),
    Source("KAFKA_SASL_PASSWORD_FILE", "kafka", "sasl_password_file", "kafka.sasl_password_file", password_from_file),
    Source("KAFKA_SSL_CAFILE", "kafka", "ssl_cafile", "kafka.ssl_cafile", readable_file),
    Source("KAFKA_SSL_CERTFILE", "kafka", "ssl_certfile", "kafka.ssl_certfile", readable_file),
    Source("KAFKA_SSL_KEYFILE", "kafka", "ssl_keyfile", "kafka.ssl_keyfile", readable_file),
    Source("PATCHGATE_REPLICATION_FACTOR", "kafka", "replication_factor", "replication_factor",
           partial(integer, low=1, high=100), int),
    Source("PATCHGATE_MIN_INSYNC_REPLICAS", "kafka", "min_insync_replicas", "min_insync_replicas",
           partial(integer, low=1, high=100), int),
    Source("PATCHGATE_WIRE_FORMAT", "kafka", "wire_format", "wire.format",
           partial(one_of, options=WIRE_FORMATS)),
    Source("PATCHGATE_SCHEMA_REGISTRY_URL", "kafka", "schema_registry_url", "wire.registry_url", _registry_url),
    Source("PATCHGATE_SCHEMA_REGISTRY_USERNAME", "kafka", "schema_registry_username", "wire.registry_username", text),
    Source("PATCHGATE_SCHEMA_REGISTRY_PASSWORD", "kafka", "schema_registry_password", "wire.registry_password", text),
    Source("PATCHGATE_SCHEMA_REGISTRY_PASSWORD_FILE", "kafka", "schema_registry_password_file",
           "wire.registry_password_file", password_from_file),
    Source("CLICKHOUSE_URL", "clickhouse", "url", "clickhouse_url", _clickhouse_url),
    Source("PATCHGATE_DATA_DIR", "worker", "data_dir", "data_dir", _path),
    Source("PATCHGATE_WEB_HOST", "worker", "web_host", "web_host", _host),
    Source("PATCHGATE_WEB_PORT", "worker", "web_port", "web_port", partial(integer, low=1, high=65535), int),
    Source("PATCHGATE_WEB_TOKEN", "worker", "web_token", "web_token", _token),
    Source("PATCHGATE_WEB_VIEW_TOKEN", "worker", "web_view_token", "web_view_token", _token),
    Source("PATCHGATE_WEB_HOSTNAMES", "worker", "web_hostnames", "web_hostnames", _hostnames),
    Source("PATCHGATE_SESSION_TIMEOUT", "worker", "session_timeout_seconds", "session_timeout_seconds",
           partial(number, low=6, high=300), float),
    Source("PATCHGATE_STANDBY_REPLICAS", "worker", "standby_replicas", "standby_replicas",
           partial(integer, low=0, high=10), int),
    Source("PATCHGATE_CATALOG", "catalog", "path", "catalog_path", _path),
    Source("PATCHGATE_SOURCE_IDLE_SECONDS", "stream", "source_idle_seconds", "stream.source_idle_seconds",
           partial(number, low=0), float),
    Source("PATCHGATE_DLQ_MAX_RATIO", "dead_letters", "max_ratio", "dead_letters.max_ratio",
           partial(number, low=0, high=1, low_included=False), float),
    Source("PATCHGATE_DLQ_MAX_CONSECUTIVE", "dead_letters", "max_consecutive", "dead_letters.max_consecutive",
           partial(integer, low=1), int),
    Source("PATCHGATE_MTA_IDLE_TIMEOUT", "mta", "idle_timeout_seconds", "mta.idle_timeout_seconds",
           partial(number, low=0, low_included=False), float),
    Source("PATCHGATE_MTA_MAX_CONNECTIONS", "mta", "max_connections", "mta.max_connections",
           partial(integer, low=1, high=1_000_000), int),
    Source("PATCHGATE_MTA_CLIENT_NETWORKS", "mta", "client_networks", "mta.client_networks", _client_networks),
)

_SECTIONS = {section: tuple(s.key for s in SOURCES if s.section == section)
             for section in dict.fromkeys(s.section for s in SOURCES)}
_GROUPS = {"stream": StreamSettings, "dead_letters": DeadLetterSettings, "mta": MtaSettings}


def load_settings(config_file: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings of the file (`config_file`, else PATCHGATE_CONFIG) and the environment, checked;
    raises ConfigError for the first one that does not read."""
    path = config_file or environ.get("PATCHGATE_CONFIG")
    data = _read_file(Path(path)) if path else {}
    table(data, "", [*_SECTIONS, "policy", "formats", "notify"], what="a settings section")
    sections = {name: table(data.get(name, {}), name, keys) for name, keys in _SECTIONS.items()}
    flat: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {name: {} for name in (*_GROUPS, "kafka", "wire")}
    # The key each value was given by, for the checks that join several of them.
    keys: dict[str, str] = {}
    for source in SOURCES:
        # Both are checked; the environment, read last, wins.
        given = []
        if source.key in sections[source.section]:
            given.append((sections[source.section][source.key], f"{source.section}.{source.key}"))
        if environ.get(source.env):
            given.append((_from_env(environ[source.env], source.env_type), source.env))
        group, _, name = source.field.rpartition(".")
        for value, key in given:
            (groups[group] if group else flat)[name] = source.read(value, key)
            keys[source.field] = key
    _check_replicas(flat, keys)
    _check_tokens(flat, keys)
    return Settings(
        **flat,
        kafka=checked(groups["kafka"], {field.removeprefix("kafka."): key for field, key in keys.items()}),
        wire=_wire(groups["wire"], keys),
        **{name: kind(**groups[name]) for name, kind in _GROUPS.items()},
        policy=PolicyConfig.from_mapping(data.get("policy", {})),
        formats=FormatConfig.from_mapping(data.get("formats", {}), zone_named=_time_zone),
        notify=NotifyConfig.from_mapping(data.get("notify", {})),
    )


def _check_replicas(flat: Mapping[str, Any], keys: Mapping[str, str]) -> None:
    factor, least = flat.get("replication_factor"), flat.get("min_insync_replicas")
    if factor is not None and least is not None and least > factor:
        raise ConfigError(keys["min_insync_replicas"], f"is {least}, more than the {factor} replicas of "
                                                       f"{keys['replication_factor']}: no write could succeed")


def _check_tokens(flat: Mapping[str, Any], keys: Mapping[str, str]) -> None:
    if flat.get("web_view_token") is not None and flat.get("web_view_token") == flat.get("web_token"):
        raise ConfigError(keys["web_view_token"], f"is the same as {keys['web_token']}: viewers would hold the "
                                                   "operator's token; give them another one")


def _wire(values: Mapping[str, Any], keys: Mapping[str, str]) -> WireSettings:
    """The wire settings read (field -> value), checked as a whole; `keys` names each field's key."""
    def key(name: str) -> str:
        return keys[f"wire.{name}"]

    if "registry_password" in values and "registry_password_file" in values:
        raise ConfigError(key("registry_password_file"), f"and {key('registry_password')} are both set: give one")
    password = values.get("registry_password", values.get("registry_password_file"))
    url, username = values.get("registry_url"), values.get("registry_username")
    if values.get("format") == "confluent" and url is None:
        raise ConfigError(key("format"), "is confluent, which needs a schema registry: PATCHGATE_SCHEMA_REGISTRY_URL "
                                         "(kafka.schema_registry_url) is not set")
    given = [name for name in ("registry_username", "registry_password", "registry_password_file") if name in values]
    if given and url is None:
        raise ConfigError(key(given[0]), "is set without PATCHGATE_SCHEMA_REGISTRY_URL (kafka.schema_registry_url)")
    if (username is None) != (password is None):
        raise ConfigError(key(given[0]), "needs both a registry username and a password (or password file)")
    if password is not None and url is not None:
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback(parts.hostname, None):
            raise ConfigError(key("registry_url"), "is plain http beyond loopback: the registry password would "
                                                   "cross the network in clear text; use https")
    return WireSettings(format=values.get("format", WIRE_FORMATS[0]), registry_url=url, registry_username=username,
                        registry_password=password)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"is not a TOML file: {exc}") from None


def _from_env(value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        return value
