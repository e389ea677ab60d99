"""What the bad-input and abuse checks (bench/abuse.py) run against: one pipeline of their own on the
shared broker (own topic prefix, consumer groups and data folder, as the integration tests isolate
themselves), `patchgate run` with its web port bound beyond loopback and both tokens set, other
`patchgate` commands as child processes with their peak memory, and the reads the checks make of
the pipeline's topics.

Every process is a child with its log in the run's folder; Rig.close kills what still runs.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kafka import TopicPartition  # noqa: E402

from pipeline import kafka_clients  # noqa: E402
from pipeline.domain.policy import Decision  # noqa: E402
from pipeline.edges.decisions import read_decisions  # noqa: E402
from pipeline.kafka_admin import ensure_topics, wait_until_drained  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from pipeline.topic_reading import from_start, records_to_end  # noqa: E402
from testkit.ports import free_port  # noqa: E402

SAMPLES = ROOT / "tests" / "samples"
# The samples' settings: our own MX hosts are trusted receivers.
SAMPLES_CONFIG = ROOT / "tests" / "samples.toml"


@dataclass(frozen=True)
class Row:
    """One line of the table: what was tried on which surface, what came of it, and whether that is
    what the surface promises."""

    surface: str
    tried: str
    outcome: str
    holds: bool


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine beyond loopback (`hostname -I`), or None when it has none."""
    try:
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    for word in listed:
        try:
            address = ipaddress.ip_address(word)
        except ValueError:
            continue
        if address.version == 4 and not address.is_loopback:
            return word
    return None


def rss_mb(pid: int) -> float:
    """A running process's resident memory now, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


class Child:
    """A long-running child process (`patchgate run`, `mta`, ...) with its output in a log file."""

    def __init__(self, command: list[str], env: dict, log: Path):
        self.log = log
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        """The first match of `pattern` in the log, once it is there."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            if not self.alive():
                raise RuntimeError(f"{self.log.name}: exited before it logged {pattern!r}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.log.name}: no {pattern!r} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM, then the exit status (None: still running after `timeout`, then killed)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Finished:
    """A command run to its end: exit status, output, its peak resident memory (the kernel's
    ru_maxrss of that process alone) and how long it took."""

    status: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float


def run_measured(command: list[str], env: dict, log_stem: Path, timeout: float = 300) -> Finished:
    """Run `command` to its end (killed after `timeout`), its output kept in files beside `log_stem`."""
    out, err = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL)
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return Finished(process.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
                    usage.ru_maxrss / 1024, time.monotonic() - started)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    ms: float

    def text(self, limit: int = 160) -> str:
        return self.body.decode("utf-8", "replace").strip()[:limit]


class Rig:
    """One pipeline of the checks' own on the broker in KAFKA_BOOTSTRAP_SERVERS (default the shared
    127.0.0.1:9092): own topic prefix, consumer groups and data folder under `folder`, the samples'
    settings, its web port on `web_host` with an operator's and a viewers' token."""

    def __init__(self, folder: Path, web_host: str):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        run = uuid.uuid4().hex[:8]
        self.web_host, self.web_port = web_host, free_port(web_host)
        self.operator_token, self.viewer_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "PATCHGATE_TOPIC_PREFIX": f"abuse-{run}.",
            "PATCHGATE_APP_ID": f"patchgate-abuse-{run}",
            "PATCHGATE_DATA_DIR": str(folder / "data"),
            "PATCHGATE_WEB_HOST": web_host,
            "PATCHGATE_WEB_PORT": str(self.web_port),
            "PATCHGATE_WEB_TOKEN": self.operator_token,
            "PATCHGATE_WEB_VIEW_TOKEN": self.viewer_token,
            "PATCHGATE_PARTITIONS": "4",
            "PATCHGATE_CONFIG": str(SAMPLES_CONFIG),
            # Sources end after 2 s of quiet, so that the stream lets go what they hold as evaluate does.
            "PATCHGATE_SOURCE_IDLE_SECONDS": "2",
        }
        self.env.pop("CLICKHOUSE_URL", None)
        self.settings: Settings = load_settings(None, environ=self.env)
        ensure_topics(self.settings)
        self.children: list[Child] = []
        self.pipeline: Child | None = None
        self._runs = 0

    def start(self, name: str, *args: str, env: dict | None = None) -> Child:
        """`patchgate ARGS` as a long-running child, its log <folder>/<name>.log."""
        child = Child([sys.executable, "-m", "pipeline", *args], {**self.env, **(env or {})},
                      self.folder / f"{name}.log")
        self.children.append(child)
        return child

    def patchgate(self, *args: str, env: dict | None = None, timeout: float = 300) -> Finished:
        """`patchgate ARGS` run to its end, measured."""
        self._runs += 1
        stem = self.folder / f"{self._runs:02d}-{args[0]}"
        return run_measured([sys.executable, "-m", "pipeline", *args], {**self.env, **(env or {})}, stem, timeout)

    def start_pipeline(self, timeout: float = 180) -> Child:
        """`patchgate run`, once its web port answers."""
        self.pipeline = self.start("run", "run")
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.web("GET", "/health").status == 200:
                    return self.pipeline
            except OSError:
                pass
            if not self.pipeline.alive():
                raise RuntimeError(f"patchgate run exited at start:\n{self.pipeline.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"patchgate run's web port did not answer in {timeout:.0f} s")
            time.sleep(0.5)

    def web(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> Answer:
        """One request to the pipeline's web port, as any client on the network sends it."""
        connection = http.client.HTTPConnection(self.web_host, self.web_port, timeout=timeout)
        started = time.monotonic()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, response.read(), (time.monotonic() - started) * 1000)
        finally:
            connection.close()

    def drained(self, timeout: float = 180) -> None:
        """Until the worker has processed everything on its topics (RuntimeError if it exits)."""
        assert self.pipeline is not None, "the pipeline is started first"
        wait_until_drained(self.settings, timeout, worker_alive=self.pipeline.alive)

    def records(self, name: str, timeout: float = 60) -> list:
        """Every record of pipeline topic `name`, from its start to its current end."""
        consumer = kafka_clients.consumer(self.settings)
        try:
            partitions = from_start(consumer, self.settings.topic(name))
            return list(records_to_end(consumer, partitions, timeout))
        finally:
            consumer.close()

    def end_offsets(self, name: str) -> int:
        """How many records pipeline topic `name` has had, all partitions."""
        consumer = kafka_clients.consumer(self.settings)
        try:
            topic = self.settings.topic(name)
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            return sum(consumer.end_offsets(partitions).values())
        finally:
            consumer.close()

    def decisions(self) -> dict[str, Decision]:
        """The newest decision of each server on mail.decisions, by host name."""
        return {decision.hostname: decision for decision in read_decisions(self.settings)}

    def close(self) -> None:
        for child in self.children:
            child.kill()


def wait_until(condition, timeout: float, every: float = 0.5) -> bool:
    """Whether `condition()` came true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())


def renamed_lines(path: Path, label: str) -> bytes:
    """A sample log with every sending domain `x.example` made `x.<label>.example` (our own
    example.net left as it is): lines whose servers no other check's lines name."""
    text = path.read_text()
    return re.sub(r"\b([a-z0-9-]+)\.example\b(?!\.)", rf"\1.{label}.example", text).encode()

