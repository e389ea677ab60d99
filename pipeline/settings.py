"""Runtime settings: a TOML file (optional) overridden by environment variables.

    [kafka]       bootstrap_servers, partitions, topic_prefix, app_id
    [clickhouse]  url            ("chdb:///dir" embedded, or http(s)://... for a server)
    [worker]      data_dir, web_host, web_port
    [policy]      see pipeline.domain.config.PolicyConfig

Environment: KAFKA_BOOTSTRAP_SERVERS, PATCHGATE_PARTITIONS, PATCHGATE_TOPIC_PREFIX, PATCHGATE_APP_ID,
CLICKHOUSE_URL, PATCHGATE_DATA_DIR, PATCHGATE_WEB_HOST, PATCHGATE_WEB_PORT, PATCHGATE_CONFIG (the file).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from pipeline.domain.config import PolicyConfig


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
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def load_settings(config_file: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    path = config_file or environ.get("PATCHGATE_CONFIG")
    data = tomllib.loads(Path(path).read_text()) if path else {}
    kafka, clickhouse, worker = data.get("kafka", {}), data.get("clickhouse", {}), data.get("worker", {})

    def pick(env: str, section: Mapping, key: str, default):
        return environ.get(env) or section.get(key, default)

    defaults = Settings()
    return Settings(
        bootstrap_servers=pick("KAFKA_BOOTSTRAP_SERVERS", kafka, "bootstrap_servers", defaults.bootstrap_servers),
        partitions=int(pick("PATCHGATE_PARTITIONS", kafka, "partitions", defaults.partitions)),
        topic_prefix=pick("PATCHGATE_TOPIC_PREFIX", kafka, "topic_prefix", defaults.topic_prefix),
        app_id=pick("PATCHGATE_APP_ID", kafka, "app_id", defaults.app_id),
        clickhouse_url=pick("CLICKHOUSE_URL", clickhouse, "url", defaults.clickhouse_url),
        data_dir=Path(pick("PATCHGATE_DATA_DIR", worker, "data_dir", defaults.data_dir)),
        web_host=pick("PATCHGATE_WEB_HOST", worker, "web_host", defaults.web_host),
        web_port=int(pick("PATCHGATE_WEB_PORT", worker, "web_port", defaults.web_port)),
        policy=PolicyConfig.from_mapping(data.get("policy", {})),
    )
