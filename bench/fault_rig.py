"""What the fault campaign (bench/faults.py) runs the real pipeline with: a broker of its own, or a
secured three-broker cluster of its own, a pipeline with its own topics, group and data folder (the
integration tests' isolated_env; on the cluster every process runs as its role's principal), the
processes an operator runs (`patchgate worker`, `ship --follow`, `mta`), log files that grow while
they run, and what the scenarios measure with: the group's lag and committed offsets sampled or
waited for, how far lines, observations and server states got on each partition, and the worker's
web port asked while a fault lasts.

Every process is a child with its log in the scenario's folder; Pipeline.close kills what is
still running, so a failed scenario leaves nothing behind.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import TopicPartition

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
for folder in (ROOT, BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from pipeline import kafka_clients  # noqa: E402
from pipeline.contracts import topics  # noqa: E402
from pipeline.kafka_admin import (  # noqa: E402
    CONSUMED,
    PROCESSED,
    _committed_offsets as committed_offsets,
    lag,
    wait_until_drained,
)
from pipeline.settings import Settings  # noqa: E402
from testkit.cluster import ClusterScript  # noqa: E402
from testkit.isolated import Worker, isolated_env  # noqa: E402
from testkit.ports import free_port  # noqa: E402

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
# What Faust logs when an agent raised. Its supervisor then restarts the agent, which reads on
# after the batch it failed on.
AGENT_CRASHED = "]: Crashed reason="


@dataclass(frozen=True)
class OwnBroker:
    """A broker of the campaign's own (deploy/kafka/kafka.sh with its own home and ports), which it
    may stop and start at will; never the shared one on 9092."""

    home: Path = Path("/tmp/faults-kafka")
    port: int = 19092
    controller_port: int = 19093

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATCHGATE_KAFKA_HOME": str(self.home), "KAFKA_PORT": str(self.port),
               "KAFKA_CONTROLLER_PORT": str(self.controller_port)}
        return subprocess.run(["bash", str(KAFKA_SH), command], env=env, capture_output=True, text=True, check=check)

    def running(self) -> bool:
        return self._run("status", check=False).returncode == 0

    def start(self) -> None:
        done = self._run("start", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"own broker did not start: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        self._run("stop")


class OwnCluster(ClusterScript):
    """A secured three-broker cluster of the campaign's own (deploy/kafka/cluster.sh with its own home
    and ports), whose nodes it kills, stops, freezes and starts at will; never the test suite's on
    29092. It starts with empty nodes (certificates and passwords kept), so that the pipelines of
    earlier campaigns do not slow a node's restart."""

    NODES = (1, 2, 3)

    def __init__(self, home: Path = Path("/tmp/faults-cluster"), base_port: int = 49092):
        super().__init__({"PATCHGATE_CLUSTER_HOME": str(home), "CLUSTER_BASE_PORT": str(base_port)})

    def running(self) -> bool:
        return self.run("status", check=False).returncode == 0

    def start(self) -> None:
        ClusterScript({**self.environ, "PATCHGATE_CLUSTER_FRESH": "1"}).run("start")

    def stop(self) -> None:
        self.run("stop", timeout=180)

    def start_node(self, node: int) -> None:
        """Start the node and wait until the cluster lists it unfenced again."""
        self.run("start-node", str(node))

    def stop_node(self, node: int) -> None:
        self.run("stop-node", str(node), timeout=180)

    def kill_node(self, node: int) -> None:
        self.run("kill-node", str(node))

    def pid(self, node: int) -> int | None:
        """The node's JVM, None when it is not running."""
        done = self.run("pid", str(node), check=False)
        return int(done.stdout) if done.returncode == 0 else None

    def heal(self) -> None:
        """Every node running and none frozen, whatever a scenario left."""
        for node in self.NODES:
            pid = self.pid(node)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        for node in self.NODES:
            self.start_node(node)  # of a running node: waits until it is listed unfenced


def leaders(settings, names: tuple[str, ...]) -> Counter:
    """How many partitions of the pipeline topics `names` each broker leads."""
    admin = kafka_clients.admin(settings, "faults")
    try:
        described = admin.describe_topics([settings.topic(name) for name in names])
        return Counter(p["leader_id"] for t in described for p in t["partitions"])
    finally:
        admin.close()


def under_replicated(settings) -> int:
    """Partitions of the cluster, every topic's and the internal ones, with fewer replicas in sync
    than they have."""
    admin = kafka_clients.admin(settings, "faults")
    try:
        return sum(len(partition["isr_nodes"]) < len(partition["replica_nodes"])
                   for topic in admin.describe_topics() for partition in topic["partitions"])
    finally:
        admin.close()


class Process(Worker):
    """A child process with its output in a log file (the integration tests' Worker, any command)."""

    def __init__(self, command: list[str], env: dict, log: Path):
        self.log = log
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it still runs after `timeout` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def agent_crashes(self) -> int:
        """How often one of a worker's agents crashed (Faust restarts it, the process lives on)."""
        return self.text().count(AGENT_CRASHED)


class Pipeline:
    """One pipeline of its own on the broker in KAFKA_BOOTSTRAP_SERVERS, and the processes it runs.

    `config` is a TOML settings file; `data_dir` defaults to <folder>/data; `env` adds variables
    (dead-letter limits, the fault flag) to every process."""

    def __init__(self, folder: Path, config: Path | None = None, data_dir: Path | None = None, env: dict | None = None,
                 partitions: int = 4):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.settings, self.env = self._isolated_env(data_dir or folder / "data", config, partitions)
        self.env.update(env or {})
        self.processes: list[Process] = []
        self.worker_ports: dict[int, int] = {}

    def _isolated_env(self, data_dir: Path, config: Path | None, partitions: int) -> tuple:
        return isolated_env(data_dir, config, partitions)

    def role_env(self, role: str) -> dict:
        """The environment of a process of `role` (pipeline.kafka_acls.ROLES): on the single
        broker, every process has the pipeline's."""
        return self.env

    def _start(self, name: str, command: list[str], env: dict | None = None) -> Process:
        count = sum(1 for p in self.processes if p.log.name.startswith(f"{name}-"))
        process = Process(command, env or self.env, self.folder / f"{name}-{count}.log")
        self.processes.append(process)
        return process

    def scaled_worker(self, number: int) -> Process:
        """`patchgate worker` number `number` of several: its own data folder (its tables) and web
        port, kept across restarts of the same number."""
        port = self.worker_ports.setdefault(number, free_port())
        env = {**self.role_env("worker"), "PATCHGATE_DATA_DIR": str(self.folder / f"worker{number}-data"),
               "PATCHGATE_WEB_PORT": str(port)}
        return self._start(f"worker{number}", [sys.executable, "-m", "pipeline", "worker"], env)

    def sink(self) -> Process:
        """`patchgate sink` on the pipeline's data folder and web port (what `sql` and `web` ask)."""
        return self._start("sink", [sys.executable, "-m", "pipeline", "sink"], self.role_env("sink"))

    def worker_web(self, number: int, path: str, timeout: float = 5) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.worker_ports[number]}{path}", timeout=timeout) as answer:
            return answer.read().decode()

    def worker(self, faulty: bool = False) -> Process:
        """`patchgate run` (a worker and the sink in one process), or with faulty=True the same with
        ClickHouse writes that fail while the flag file in PATCHGATE_FAULT_FLAG exists
        (bench/fault_worker.py)."""
        if faulty:
            return self._start("worker", [sys.executable, str(BENCH / "fault_worker.py")])
        return self._start("worker", [sys.executable, "-m", "pipeline", "run"])

    def shipper(self, paths: list[Path], follow: bool) -> Process:
        command = [sys.executable, "-m", "pipeline", "ship", *map(str, paths),
                   "--checkpoint", str(self.folder / "ship-checkpoint.json")]
        return self._start("ship", command + (["--follow"] if follow else []), self.role_env("shipper"))

    def line_shipper(self, paths: list[Path]) -> Process:
        """kcat following each file, one record per line keyed by its absolute path (bench/kcat_follow.py)."""
        command = [sys.executable, str(BENCH / "kcat_follow.py"), self.settings.bootstrap_servers,
                   self.settings.topic(topics.RAW), *(str(path.resolve()) for path in paths)]
        return self._start("kcat", command, self.role_env("shipper"))

    def mta(self, port: int) -> Process:
        return self._start("mta", [sys.executable, "-m", "pipeline", "mta", "--port", str(port),
                                   "--cache", str(self.folder / "decision-cache.json")], self.role_env("mta"))

    def web(self, path: str, body: dict | None = None, timeout: float = 60):
        """A JSON answer of the worker's web port."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.settings.web_port}{path}", data=json.dumps(body).encode() if body else None,
            headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def sql(self, query: str) -> list[list]:
        return self.web("/sql", {"query": query})["rows"]

    def every_row(self, query: str, page: int = 10_000) -> list[list]:
        """Every row of a SELECT, `page` rows at a time: the sink answers an analyst's SQL with at
        most 10,000 rows (ordered by all columns, so that the pages neither overlap nor skip)."""
        rows: list[list] = []
        while True:
            found = self.sql(f"SELECT * FROM ({query}) ORDER BY ALL LIMIT {page} OFFSET {len(rows)}")
            rows += found
            if len(found) < page:
                return rows

    def wait_for_web(self, worker: Process, timeout: float = 180) -> None:
        """Until the worker's web port answers (it opened ClickHouse and joined its group)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.web("/report", timeout=5)
                return
            except (OSError, ValueError) as exc:
                if not worker.alive():
                    raise RuntimeError(f"the worker exited at start:\n{worker.tail()}") from exc
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the worker's web port did not answer in {timeout:.0f} s") from exc
                time.sleep(0.5)

    def close(self) -> None:
        for process in self.processes:
            if process.alive():
                process.kill()


class ClusterPipeline(Pipeline):
    """A pipeline of its own on an OwnCluster, as a site runs one there: the operator applies the
    ACLs `patchgate kafka-acls` prints (with Kafka's own tool) and creates the topics, and every
    process runs as its role's principal (`patchgate worker` as the worker, `sink` as the sink, the
    shipper and `mta` as themselves). `settings` are the cluster's super user's: the campaign reads
    and measures with them, where no role may read everything."""

    def __init__(self, folder: Path, cluster: OwnCluster, env: dict | None = None, partitions: int = 4):
        self.cluster = cluster
        super().__init__(folder, env=env, partitions=partitions)
        acls = self.operator("kafka-acls", "--command-config", cluster.admin_config())
        cluster.apply(acls.splitlines())
        self.operator("topics")

    def _isolated_env(self, data_dir: Path, config: Path | None, partitions: int) -> tuple:
        # Nothing of the campaign's single broker: the roles bring their own Kafka settings.
        base = {name: value for name, value in os.environ.items() if not name.startswith("KAFKA_")}
        return isolated_env(data_dir, config, partitions, base=self.cluster.env("admin", base), create_topics=False)

    def role_env(self, role: str) -> dict:
        return self.cluster.env(role, self.env)

    def operator(self, *args: str, timeout: float = 180) -> str:
        """A `patchgate` command as the operator; its output (RuntimeError when it fails)."""
        done = subprocess.run([sys.executable, "-m", "pipeline", *args], env=self.role_env("operator"), cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"patchgate {args[0]} as the operator failed ({done.returncode}): {done.stderr}")
        return done.stdout


def stop_gracefully(process: Process, timeout: float = 60) -> int | None:
    """SIGTERM, then the exit status (None: still running after `timeout`, then killed)."""
    if process.alive():
        process.process.send_signal(signal.SIGTERM)
    status = process.wait(timeout)
    if status is None:
        process.kill()
    return status


def _group_offsets(settings, group: str) -> dict:
    """A group's committed offsets, asked again while its coordinator is loading or moving."""
    admin = kafka_clients.admin(settings, "faults")
    try:
        return committed_offsets(admin, group)
    finally:
        admin.close()


def committed_total(settings, names: tuple[str, ...] = CONSUMED) -> int:
    """The sum of the committed offsets of the workers' and the sinks' groups over the consumed
    topics: it grows as the process works."""
    wanted = {settings.topic(name) for name in names}
    return sum(o.offset for group in (settings.app_id, topics.sink_group(settings))
               for tp, o in _group_offsets(settings, group).items() if tp.topic in wanted and o.offset >= 0)


def committed_offset(settings, name: str, partition: int, group: str | None = None) -> int | None:
    """The committed offset of `group`, by default the group that processes `name` (the workers'
    for mail.observations, which the sinks' group reads too)."""
    group = group or (settings.app_id if name in PROCESSED else topics.sink_group(settings))
    found = _group_offsets(settings, group).get(TopicPartition(settings.topic(name), partition))
    return found.offset if found is not None and found.offset >= 0 else None


def end_offsets(settings, name: str) -> dict[int, int]:
    consumer = kafka_clients.consumer(settings)
    try:
        topic = settings.topic(name)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


class GrowingLogs:
    """Log files that grow at `rate` lines/s in a thread, as mail servers write them: the lines of
    each source (bench/corpus.py) are appended in turns of a few lines, every TICK_S."""

    TICK_S = 0.1

    def __init__(self, folder: Path, sources, rate: float):
        from e2e_throughput import interleaved

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.sources, self.rate = folder, sources, rate
        self.paths = [folder / Path(source.name).relative_to("/") for source in sources]
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        self.order = interleaved(sources)
        self.written = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._write, name="growing-logs", daemon=True)

    @property
    def total(self) -> int:
        return len(self.order)

    def start(self) -> GrowingLogs:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def _write(self) -> None:
        started = time.monotonic()
        handles = [path.open("ab") for path in self.paths]
        try:
            while self.written < self.total:
                due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
                pending: dict[int, list[bytes]] = {}
                for s, i in self.order[self.written:due]:
                    pending.setdefault(s, []).append(self.sources[s].lines[i])
                for s, lines in pending.items():
                    handles[s].write(b"".join(lines))
                    handles[s].flush()
                self.written = due
                time.sleep(self.TICK_S)
        finally:
            for handle in handles:
                handle.close()
            self.done.set()


@dataclass
class LagSampler:
    """Samples the group's lag on some topics in a thread: (seconds since start, lag) pairs; a
    sample the broker could not answer is left out."""

    settings: Settings
    names: tuple[str, ...] = CONSUMED
    every_s: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def now(self) -> float:
        return time.monotonic() - self._started

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((value for at, value in self.samples if start <= at <= end), default=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((self.now(), lag(self.settings, self.names)))
            except Exception:  # the broker may be down on purpose: no sample then
                pass
            self._stop.wait(self.every_s)


class FlowSampler:
    """Samples in threads, every `every_s`, how far the pipeline got on each partition, by the end
    offsets of the topics each step writes: mail.logs.raw (`lines`: what the shipper got written),
    mail.observations (`parsed`: the workers' ingest agent, whose output goes out as it commits)
    and the server-state table's changelog (`decided`: the enforce agent writes the state of every
    server of each batch it decides on). Decisions themselves come in bursts, as the servers of a
    load cross a stage at about the same time, so their flow says little of a fault's.

    Each partition's end offset is asked by a thread and client of its own, so that a partition
    whose leader does not answer leaves the others' samples alone (a sample that was not answered
    is left out). The clients are made once, at the start, and never again: kafka-python's
    bootstrap picks a broker at random and waits for its TLS handshake without a timeout, so a
    client made while a broker is frozen may wait as long. They give up on a request within
    `timeout_s` and refresh their metadata every 2 s, so that they find a partition's new leader
    soon."""

    SERIES = ("lines", "parsed", "decided")
    # A pause longer than this is a stall: at a steady load every busy partition grows within a
    # second or two (the shipper polls every 0.1 s, the workers commit every 0.25 s).
    STALL_S = 3.0

    def __init__(self, settings, every_s: float = 0.5, timeout_s: float = 3.0):
        self.settings, self.every_s = settings, every_s
        timeout_ms = int(timeout_s * 1000)
        written = {"lines": settings.topic(topics.RAW), "parsed": settings.topic(topics.OBSERVATIONS),
                   "decided": topics.changelog_topic(settings, topics.SERVER_STATE_TABLE)}
        # series -> partition -> (seconds since the start, end offset), in time order
        self.samples: dict[str, dict[TopicPartition, list[tuple[float, int]]]] = {
            name: {TopicPartition(topic, p): [] for p in range(settings.partitions)} for name, topic in written.items()}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for name, partitions in self.samples.items():
            for tp in partitions:
                consumer = kafka_clients.consumer(settings, request_timeout_ms=timeout_ms, metadata_max_age_ms=2000)
                self._sampler(name, consumer, lambda consumer, tp=tp: consumer.end_offsets([tp], timeout_ms))
        self._started = time.monotonic()

    def _sampler(self, name: str, client, read: Callable) -> None:
        def run() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        found = read(client)
                    except Exception:  # see the class docstring
                        pass
                    else:
                        at = self.now()
                        for tp, offset in found.items():
                            if tp in self.samples[name]:
                                self.samples[name][tp].append((at, offset))
                    self._stop.wait(self.every_s)
            finally:
                client.close()

        self._threads.append(threading.Thread(target=run, name=f"flow {name}", daemon=True))

    def start(self) -> FlowSampler:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def now(self) -> float:
        return time.monotonic() - self._started

    def _grown_at(self, name: str, start: float, end: float) -> dict[TopicPartition, list[float]]:
        """When each partition of `name` was seen grown between `start` and `end`."""
        return {tp: [at for (_, before), (at, offset) in itertools.pairwise(samples)
                     if start < at < end and offset > before]
                for tp, samples in self.samples[name].items()}

    def busy(self, name: str, start: float, end: float) -> set[TopicPartition]:
        """The partitions of `name` that grew between `start` and `end` (the others get no lines)."""
        return {tp for tp, times in self._grown_at(name, start, end).items() if times}

    def stalls(self, name: str, partitions: set, start: float, end: float) -> tuple[float, float | None]:
        """Of `partitions` of `name`, between `start` and `end`: the longest time one went without
        growing, and the seconds from `start` until every one flowed again, i.e. the end of its
        last stall of more than STALL_S (0 without one; None when one lasted to `end`). `end` must
        come before the load ends, or its end counts as a stall."""
        grown_at = self._grown_at(name, start, end)
        longest = 0.0
        again: float | None = 0.0
        for tp in partitions:
            for a, b in itertools.pairwise([start, *grown_at.get(tp, ()), end]):
                longest = max(longest, b - a)
                if b - a > self.STALL_S and again is not None:
                    again = None if b == end else max(again, b - start)
        return longest, again

    def save(self, path: Path, moments: list[tuple[str, float]]) -> None:
        """The samples and the fault's moments as JSON (seconds since the sampler started), for a post-mortem."""
        path.write_text(json.dumps({"moments": moments, **{
            name: {f"{tp.topic}/{tp.partition}": samples for tp, samples in by_partition.items()}
            for name, by_partition in self.samples.items()}}))


def drain(pipeline: Pipeline, *workers: Process, timeout: float) -> float:
    """Seconds until the workers (`patchgate run`, or workers and sinks) have processed everything;
    none may exit or crash an agent meanwhile."""
    started = time.monotonic()
    try:
        wait_until_drained(pipeline.settings, timeout,
                           worker_alive=lambda: all(w.alive() and not w.agent_crashes() for w in workers))
    except RuntimeError as exc:
        failed = next(w for w in workers if not w.alive() or w.agent_crashes())
        what = "an agent crashed" if failed.agent_crashes() else "the worker exited"
        raise RuntimeError(f"{what} before it had processed everything ({failed.log.name}):\n{failed.tail()}") from exc
    return time.monotonic() - started


def until_progress(pipeline: Pipeline, worker: Process, load: GrowingLogs, timeout: float = 180) -> float:
    """Seconds from now until a (re)started worker commits something (or has nothing left to do)."""
    started = time.monotonic()
    before = committed_total(pipeline.settings)
    while time.monotonic() - started < timeout:
        if not worker.alive():
            raise RuntimeError(f"the worker exited by itself:\n{worker.tail()}")
        if committed_total(pipeline.settings) > before or (load.done.is_set() and lag(pipeline.settings) == 0):
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"the worker committed nothing in {timeout:.0f} s:\n{worker.tail()}")


def first_times(conditions, timeout: float, every: float = 0.5) -> list[float | None]:
    """For each condition, the seconds from now until it first held (None: not within `timeout`);
    a condition that raises has not held yet (the broker may still be coming back)."""
    started = time.monotonic()
    times: list[float | None] = [None] * len(conditions)
    while None in times and time.monotonic() - started < timeout:
        for n, condition in enumerate(conditions):
            try:
                if times[n] is None and condition():
                    times[n] = time.monotonic() - started
            except Exception:  # see the docstring
                pass
        time.sleep(every)
    return times


class Probe:
    """Asks something every second in a thread, while started: how many answers came within
    `timeout`, and the slowest. `ask` returns whether it was answered; an OSError or ValueError it
    raises is no answer."""

    def __init__(self, name: str, ask: Callable[[], bool], timeout: float = 5.0):
        self.ask, self.timeout = ask, timeout
        self.asked = self.answered = 0
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe {name}", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.asked += 1
            started = time.monotonic()
            try:
                self.answered += bool(self.ask())
            except (OSError, ValueError):
                pass
            self.slowest = max(self.slowest, time.monotonic() - started)
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def __str__(self) -> str:
        return f"{self.answered}/{self.asked} (slowest {self.slowest:.1f} s)"


class WebProbe(Probe):
    """Asks one route of the worker's web port every second (a Probe)."""

    def __init__(self, pipeline: Pipeline, path: str, timeout: float = 5.0):
        def ask() -> bool:
            pipeline.web(path, timeout=timeout)
            return True

        super().__init__(path, ask, timeout)
        self.path = path

