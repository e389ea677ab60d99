"""Runtime settings: a TOML file (optional) overridden by environment variables.

    [kafka]       bootstrap_servers, partitions, topic_prefix, app_id
    [clickhouse]  url            ("chdb:///dir" embedded, or http(s)://... for a server)
    [worker]      data_dir, web_host, web_port
    [catalog]     path           (the newer build list `patchgate catalog update` writes)
    [policy]      see pipeline.domain.config.PolicyConfig
    [formats]     see pipeline.domain.config.FormatConfig

Environment: KAFKA_BOOTSTRAP_SERVERS, PATCHGATE_PARTITIONS, PATCHGATE_TOPIC_PREFIX, PATCHGATE_APP_ID,
CLICKHOUSE_URL, PATCHGATE_DATA_DIR, PATCHGATE_WEB_HOST, PATCHGATE_WEB_PORT, PATCHGATE_CATALOG,
PATCHGATE_CONFIG (the file).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from pipeline.domain.config import FormatConfig, PolicyConfig


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = 4
    topic_prefix: str = ""
    app_id: str = "patchgate"
    clickhouse_url: str = ""
    data_dir: Path = Path(".patchgate")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    catalog_path: Path | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    formats: FormatConfig = field(default_factory=FormatConfig)

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def catalog_file(self) -> Path:
        """Where the newer build list is written and read (it need not exist)."""
        return self.catalog_path or self.data_dir / "catalog" / "exchange_builds.csv"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


# (environment variable, TOML section, key, Settings field, type): the environment wins over the file.
SOURCES = (
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka", "bootstrap_servers", "bootstrap_servers", str),
    ("PATCHGATE_PARTITIONS", "kafka", "partitions", "partitions", int),
    ("PATCHGATE_TOPIC_PREFIX", "kafka", "topic_prefix", "topic_prefix", str),
    ("PATCHGATE_APP_ID", "kafka", "app_id", "app_id", str),
    ("CLICKHOUSE_URL", "clickhouse", "url", "clickhouse_url", str),
    ("PATCHGATE_DATA_DIR", "worker", "data_dir", "data_dir", Path),
    ("PATCHGATE_WEB_HOST", "worker", "web_host", "web_host", str),
    ("PATCHGATE_WEB_PORT", "worker", "web_port", "web_port", int),
    ("PATCHGATE_CATALOG", "catalog", "path", "catalog_path", Path),
)


def load_settings(config_file: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    path = config_file or environ.get("PATCHGATE_CONFIG")
    data = tomllib.loads(Path(path).read_text()) if path else {}
    values = {}
    for env, section, key, name, kind in SOURCES:
        value = environ.get(env) or data.get(section, {}).get(key)
        if value is not None:
            values[name] = kind(value)
    return Settings(**values, policy=PolicyConfig.from_mapping(data.get("policy", {})),
                    formats=FormatConfig.from_mapping(data.get("formats", {})))
