"""Fixtures for tests on the real Kafka broker that deploy/test.sh starts (deploy/kafka/kafka.sh)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.settings import load_settings
from pipeline.streaming.admin import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def pipeline_env(tmp_path):
    """An isolated pipeline on the shared broker: own topic prefix, consumer group and data folder."""
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "PATCHGATE_TOPIC_PREFIX": f"it-{run}.",
        "PATCHGATE_APP_ID": f"patchgate-it-{run}",
        "PATCHGATE_DATA_DIR": str(tmp_path / "data"),
        "PATCHGATE_WEB_PORT": str(_free_port()),
        "PATCHGATE_PARTITIONS": "4",
    }
    env.pop("CLICKHOUSE_URL", None)
    settings = load_settings(None, environ=env)
    ensure_topics(settings)
    return settings, env


class Worker:
    def __init__(self, env: dict, log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"], env=env, cwd=ROOT,
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


@pytest.fixture
def start_worker(pipeline_env, tmp_path):
    _, env = pipeline_env
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.kill()
