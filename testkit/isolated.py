"""A pipeline of its own on a shared broker: its settings and environment, its processes, and
what its topics hold."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from kafka import TopicPartition

from pipeline import kafka_clients
from pipeline.kafka_admin import ensure_topics
from pipeline.settings import load_settings
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def isolated_env(data_dir: Path, config: Path | None = None, partitions: int = 4, base: dict | None = None,
                 create_topics: bool = True) -> tuple:
    """Settings and environment of a pipeline of its own on the shared broker: own topic prefix,
    consumer groups and data folder. `base` is the environment to start from (default this
    process's); without `create_topics` the topics are left to the caller (an operator's `topics`)."""
    run = uuid.uuid4().hex[:8]
    base = dict(os.environ if base is None else base)
    env = {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": base.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "PATCHGATE_TOPIC_PREFIX": f"it-{run}.",
        "PATCHGATE_APP_ID": f"patchgate-it-{run}",
        "PATCHGATE_DATA_DIR": str(data_dir),
        "PATCHGATE_WEB_PORT": str(free_port()),
        "PATCHGATE_PARTITIONS": str(partitions),
        # Sources end after 2 s of quiet, so that the stream lets go what they hold as evaluate does.
        "PATCHGATE_SOURCE_IDLE_SECONDS": "2",
        # A killed worker's partitions move on after 6 s (the brokers' least), not the default 15 s.
        "PATCHGATE_SESSION_TIMEOUT": "6",
    }
    env.pop("CLICKHOUSE_URL", None)
    if config is not None:
        env["PATCHGATE_CONFIG"] = str(config)
    settings = load_settings(None, environ=env)
    if create_topics:
        ensure_topics(settings)
    return settings, env


class Worker:
    """`patchgate run` (or another `role`: worker, sink) as a child process, as an operator runs it."""

    def __init__(self, env: dict, log: Path, role: str = "run"):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", role], env=env, cwd=ROOT,
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def read_topic(settings, name: str, prefixed: bool = True) -> list:
    """Every record of a pipeline topic (or, not `prefixed`, of the topic of that very name, such as
    a table's changelog), from the beginning to its current end."""
    topic = settings.topic(name) if prefixed else name
    consumer = kafka_clients.consumer(settings, consumer_timeout_ms=5000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        wanted = sum(ends.values())
        records = []
        for message in consumer:
            records.append(message)
            if len(records) >= wanted:
                break
        assert len(records) == wanted, f"{topic}: read {len(records)} of {wanted} records"
        return records
    finally:
        consumer.close()
