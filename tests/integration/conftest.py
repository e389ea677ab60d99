"""Fixtures for tests on the real Kafka broker that deploy/test.sh starts (deploy/kafka/kafka.sh)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from kafka import KafkaConsumer, TopicPartition

from pipeline.settings import load_settings
from pipeline.streaming.admin import ensure_topics, wait_until_drained

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def isolated_env(data_dir: Path, config: Path | None = None, partitions: int = 4) -> tuple:
    """Settings and environment of a pipeline of its own on the shared broker: own topic prefix,
    consumer groups and data folder."""
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "PATCHGATE_TOPIC_PREFIX": f"it-{run}.",
        "PATCHGATE_APP_ID": f"patchgate-it-{run}",
        "PATCHGATE_DATA_DIR": str(data_dir),
        "PATCHGATE_WEB_PORT": str(free_port()),
        "PATCHGATE_PARTITIONS": str(partitions),
        # Sources end after 2 s of quiet, so that the stream lets go what they hold as evaluate does.
        "PATCHGATE_SOURCE_IDLE_SECONDS": "2",
    }
    env.pop("CLICKHOUSE_URL", None)
    if config is not None:
        env["PATCHGATE_CONFIG"] = str(config)
    settings = load_settings(None, environ=env)
    ensure_topics(settings)
    return settings, env


@pytest.fixture
def pipeline_env(tmp_path):
    return isolated_env(tmp_path / "data")


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


class Workers:
    """Starts workers and makes sure none outlives the test."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs, self.started = env, logs, []

    def start(self) -> Worker:
        worker = Worker(self.env, self.logs / f"worker-{len(self.started)}.log")
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()


def _drained(settings, worker: Worker, timeout: float = 180) -> None:
    try:
        wait_until_drained(settings, timeout=timeout, worker_alive=worker.alive)
    except (TimeoutError, RuntimeError) as exc:
        raise AssertionError(f"{exc}; worker log:\n{worker.tail()}") from exc


def _read_topic(settings, name: str, prefixed: bool = True) -> list:
    """Every record of a pipeline topic (or, not `prefixed`, of the topic of that very name, such as
    a table's changelog), from the beginning to its current end."""
    topic = settings.topic(name) if prefixed else name
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
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


@pytest.fixture
def start_worker(pipeline_env, tmp_path):
    _, env = pipeline_env
    workers = Workers(env, tmp_path)
    yield workers.start
    workers.close()


@pytest.fixture
def drained():
    """drained(settings, worker): wait until the worker has processed everything, or fail with its log."""
    return _drained


@pytest.fixture
def read_topic():
    """read_topic(settings, name, prefixed=True): every record of a pipeline topic."""
    return _read_topic


TESTS = ROOT / "tests"


class MixedRun:
    """A worker that has processed every sample file (tests/samples, settings tests/samples.toml)."""

    def __init__(self, folder: Path):
        from pipeline.edges.shipper import ship

        self.settings, self.env = isolated_env(folder / "data", config=TESTS / "samples.toml")
        self.workers = Workers(self.env, folder)
        self.shipped = ship(self.settings, [str(TESTS / "samples")])
        self.worker = self.workers.start()
        _drained(self.settings, self.worker)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    run = MixedRun(tmp_path_factory.mktemp("mixed"))
    yield run
    run.workers.close()


class PostfixInstance:
    """A private Postfix (Debian's package) on a loopback port, asking a policy service at RCPT time."""

    def __init__(self, folder: Path, smtp_port: int, policy_port: int):
        self.folder, self.smtp_port = folder, smtp_port
        self.config = folder / "etc"
        for sub in ("etc", "spool", "data"):
            (folder / sub).mkdir(parents=True)
        shutil.chown(folder / "data", user="postfix")
        master = Path("/etc/postfix/master.cf").read_text()
        smtp_service = re.compile(r"^smtp\s+inet\s.*$", re.M)
        assert smtp_service.search(master), "no smtp service line in /etc/postfix/master.cf"
        (self.config / "master.cf").write_text(smtp_service.sub(f"127.0.0.1:{smtp_port} inet n - n - - smtpd", master))
        (self.config / "main.cf").write_text("\n".join([
            "compatibility_level = 3.6",
            f"queue_directory = {folder / 'spool'}",
            f"data_directory = {folder / 'data'}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = mx-test.example.net",
            "mydestination = example.net, localhost",
            "local_recipient_maps =",
            "alias_maps =",
            "alias_database =",
            "smtpd_helo_required = yes",
            f"smtpd_recipient_restrictions = reject_unauth_destination, "
            f"check_policy_service inet:127.0.0.1:{policy_port}, permit",
            f"maillog_file_prefixes = {folder}",
            f"maillog_file = {folder / 'postfix.log'}",
            "",
        ]))
        subprocess.run(["postfix", "-c", str(self.config), "start"], check=True, capture_output=True)

    def swaks(self, helo: str) -> str:
        """The server's answer to RCPT TO for a client that says HELO `helo`."""
        done = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{self.smtp_port}", "--helo", helo, "--from", f"ann@{helo}",
             "--to", "jo@example.net", "--quit-after", "RCPT", "--timeout", "20"],
            capture_output=True, text=True, timeout=60,
        )
        replies = [line[4:] for line in done.stdout.splitlines() if line.startswith(("<-  ", "<** "))]
        return replies[-2] if len(replies) >= 2 else done.stdout  # the line before QUIT's 221

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)


@pytest.fixture
def postfix():
    """start(policy_port) -> a running PostfixInstance; stopped after the test."""
    for program in ("postfix", "swaks"):
        assert shutil.which(program), f"{program} is not installed: deploy/test.sh installs Debian's postfix and swaks"
    # Postfix's own user must reach its data folder: pytest's tmp_path is private to root.
    folder = Path(tempfile.mkdtemp(prefix="patchgate-postfix-"))
    folder.chmod(0o755)
    started = []

    def start(policy_port: int) -> PostfixInstance:
        instance = PostfixInstance(folder / str(len(started)), free_port(), policy_port)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
    shutil.rmtree(folder, ignore_errors=True)
