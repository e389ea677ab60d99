"""End-to-end throughput of the pipeline on the local broker, beside the ceiling of a bare consumer.

    bash deploy/kafka/kafka.sh start
    python bench/e2e_throughput.py [--format msgtrk|postfix|headers] [--lines 1000000]
                                   [--sources N] [--servers N] [--rate LINES_PER_S]
                                   [--shape packed|lines|filebeat] [--record-lines N]
                                   [--workers N --partitions P] [--producer kafka-python|kcat]

In one run:
1. `patchgate run` (a worker and the sink, embedded ClickHouse) is started, or with --workers N a
   `patchgate sink` and N `patchgate worker` processes (each its own tables and web port), and
   given time to join their groups;
2. generated logs (bench/corpus.py) are produced to mail.logs.raw, the sources interleaved, in the
   --shape a shipper gives them: `packed`, as `patchgate ship` sends them (records of whole lines,
   at most --record-lines each, with its position headers); `lines`, one bare line per record
   keyed by its file's path and without headers (kcat -P -K, rsyslog's omkafka); `filebeat`, one
   Filebeat event per line (the JSON of its Kafka output: message, log.file.path, log.offset, and
   the fields every event carries), keyed by the path as docs/shipping.md's Filebeat setting does; all at
   once, or at --rate lines/s in ticks of 50 ms (a shipper following growing files); one-line
   records go out through kafka-python or, with --producer kcat, through `kcat -P -K` fed on its
   standard input (librdkafka, as rsyslog, Fluent Bit and Vector send them: the benchmark then
   spends a fraction of the CPU on sending, which on 2 cores the pipeline otherwise lacks);
3. timed from the first send: until the worker has committed everything (the last decision is on
   mail.decisions) and until ClickHouse holds every message row; the pipeline's processes' CPU time
   over the same span (user + system, from /proc), per million lines: less affected than wall
   time by what else the machine does;
4. a bare aiokafka consumer reads the same raw topic from the start: the ceiling for any Python
   consumer on this broker, in lines/s of the same records;
5. latency of each decision: its Kafka timestamp minus the time the line that caused it was sent;
6. the processes' peak resident memory (VmHWM), summed.

Prints one Markdown table row: format | shape | lines | sent | lines/s | bare consumer | ratio | p50 |
p99 | CPU s per M lines | peak RSS.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import FORMATS, TRUSTED  # noqa: E402

from pipeline import kafka_clients  # noqa: E402
from pipeline.contracts import packing, topics  # noqa: E402
from pipeline.contracts.avro import ENFORCEMENT_DECISION  # noqa: E402
from pipeline.domain.events import epoch_ms  # noqa: E402
from pipeline.edges.decisions import read_decisions  # noqa: E402
from pipeline.kafka_admin import ensure_topics, lag  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

TICK_S = 0.05


def http_json(url: str, body: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def interleaved(sources) -> list[tuple[int, int]]:
    """(source, line index) in the order lines are written when every source writes at once."""
    order, cursors, live = [], [0] * len(sources), list(range(len(sources)))
    while live:
        still = []
        for s in live:
            take = min(len(sources[s].lines) - cursors[s], 20)
            order += [(s, cursors[s] + i) for i in range(take)]
            cursors[s] += take
            if cursors[s] < len(sources[s].lines):
                still.append(s)
        live = still
    return order


class KcatPipe:
    """One-line records through `kcat -P`: a line per record on its standard input, the key before a
    tab (-K), partitioned by murmur2 as docs/shipping.md asks of librdkafka shippers."""

    def __init__(self, bootstrap: str, topic: str):
        self.process = subprocess.Popen(
            ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "topic.partitioner=murmur2_random",
             "-X", "linger.ms=5", "-X", "enable.idempotence=true"],
            stdin=subprocess.PIPE)
        assert self.process.stdin is not None
        self.stdin = self.process.stdin

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if b"\t" in key or b"\t" in value or b"\n" in value:
            raise ValueError(f"kcat -K takes no tab or line break inside a record: {value[:80]!r}")
        self.stdin.write(key + b"\t" + value + b"\n")

    def flush(self) -> None:
        self.stdin.flush()

    def close(self) -> None:
        """Everything written, sent and acknowledged: kcat exits once it has delivered its input."""
        self.stdin.close()
        if self.process.wait(300):
            raise SystemExit(f"kcat exited with status {self.process.returncode}")


class Sender:
    """Sends each source's pending lines in the shape a shipper gives them (see the module's doc)."""

    def __init__(self, producer: KafkaProducer | KcatPipe, topic: str, sources, shape: str, record_lines: int):
        self.producer, self.topic, self.sources, self.shape = producer, topic, sources, shape
        self.record_lines = record_lines if shape == "packed" else 1
        self.offsets = [_line_offsets(source.lines) for source in sources] if shape == "filebeat" else []
        self.sent_at: dict[tuple[str, int], float] = {}

    def send(self, pending: dict[int, list[int]]) -> None:
        now = time.time()
        for s, indexes in pending.items():
            source = self.sources[s]
            start = 0
            while start < len(indexes):
                end, size = start, 0
                while end < len(indexes) and size < packing.MAX_RECORD_BYTES and end - start < self.record_lines:
                    size += len(source.lines[indexes[end]])
                    end += 1
                self._send_record(s, indexes[start:end])
                for i in indexes[start:end]:
                    for marker in source.markers.get(i, ()):
                        self.sent_at.setdefault(marker, now)
                start = end

    def _send_record(self, s: int, indexes: list[int]) -> None:
        source = self.sources[s]
        key = source.name.encode()
        if self.shape == "packed":
            # Packed records carry their place in headers, which kcat does not send (main refuses it).
            assert not isinstance(self.producer, KcatPipe)
            self.producer.send(self.topic, key=key, value=b"".join(source.lines[i] for i in indexes),
                               headers=packing.headers(indexes[0] + 1, None))
            return
        (i,) = indexes
        line = source.lines[i].rstrip(b"\r\n")
        if self.shape == "filebeat":
            line = orjson.dumps(_filebeat_event(source.name, self.offsets[s][i], line.decode()))
        self.producer.send(self.topic, key=key, value=line)


def _line_offsets(lines: list[bytes]) -> list[int]:
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line)
    return offsets


def _filebeat_event(path: str, offset: int, message: str) -> dict:
    """What Filebeat 8's filestream input and Kafka output (codec.json) send for one line."""
    return {
        "@timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.17.0"},
        "log": {"offset": offset, "file": {"path": path, "device_id": "64768", "inode": "1835021"}},
        "message": message,
        "input": {"type": "filestream"},
        "ecs": {"version": "8.0.0"},
        "host": {"name": "ex13mbx01"},
        "agent": {"type": "filebeat", "version": "8.17.0", "name": "ex13mbx01",
                  "id": "0b9b7c4e-6a1e-4c55-9d43-8d0c6f1f4c1a", "ephemeral_id": "5a0e7d0e-b8f8-4f21-a2f4-5d1c9d1e0c11"},
    }


async def bare_consumer(bootstrap: str, topic: str, records: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        started, seen = time.perf_counter(), 0
        while seen < records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(found) for found in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    """User and system time so far of a process, its threads and its running children (a worker's
    repacker): utime and stime of /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", choices=sorted(FORMATS), default="msgtrk")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, default=100, help="log files (msgtrk: one per server)")
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.0, help="lines/s to send at (default: all at once)")
    parser.add_argument("--workers", type=int, default=0,
                        help="run a sink and this many `patchgate worker` processes (default: one `patchgate run`)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--shape", choices=("packed", "lines", "filebeat"), default="packed",
                        help="records as `patchgate ship` packs them, one bare line each, or one Filebeat event each")
    parser.add_argument("--producer", choices=("kafka-python", "kcat"), default="kafka-python",
                        help="what sends one-line records (packed ones always go through kafka-python)")
    parser.add_argument("--preload", action="store_true",
                        help="send every record before the processes start, and time from the first one they take "
                             "(a backlog; for one-line records, which this benchmark cannot send as fast as the "
                             "pipeline takes them)")
    parser.add_argument("--record-lines", type=int, default=1_000_000,
                        help="packed: at most this many lines per record (default: up to 256 KiB; "
                             "few lines: many slow files followed)")
    args = parser.parse_args()
    if args.producer == "kcat" and args.shape == "packed":
        parser.error("--producer kcat sends one-line records: use --shape lines or filebeat")

    sources = FORMATS[args.format](args.lines, args.sources, args.servers, random.Random(8))
    total = sum(len(s.lines) for s in sources)
    messages = len({m for s in sources for m in s.messages})

    run = f"bench-{uuid.uuid4().hex[:6]}"
    data_dir = ROOT / ".bench" / run
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "patchgate.toml"
    config.write_text(f"[policy]\ntrusted_receivers = {json.dumps(list(TRUSTED))}\n")
    env = {**os.environ, "PATCHGATE_TOPIC_PREFIX": f"{run}.", "PATCHGATE_APP_ID": run, "PATCHGATE_CONFIG": str(config),
           "PATCHGATE_DATA_DIR": str(data_dir), "PATCHGATE_WEB_PORT": os.environ.get("PATCHGATE_WEB_PORT", "6067"),
           "PATCHGATE_PARTITIONS": str(args.partitions)}
    env.pop("CLICKHOUSE_URL", None)
    settings = load_settings(None, environ=env)
    ensure_topics(settings)
    raw = settings.topic(topics.RAW)

    if args.producer == "kcat":
        producer: KafkaProducer | KcatPipe = KcatPipe(settings.bootstrap_servers, raw)
    else:
        producer = kafka_clients.producer(settings, acks="all", linger_ms=20, compression_type="lz4",
                                          batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024)
    sender = Sender(producer, raw, sources, args.shape, args.record_lines)
    order = interleaved(sources)
    if args.preload:
        sending = time.time()
        send_paced(sender, producer, order, 0, sending)
        produced = time.time() - sending

    processes = start_processes(env, data_dir, args.workers)
    worker = processes[0]
    try:
        if args.preload:
            # The clock starts when the first records were taken off mail.logs.raw, whatever the
            # processes were still starting: they began on the whole backlog.
            started = until_first_taken(settings, processes)
            cpu_before = sum(cpu_seconds(process.pid) for process in processes)
        web = f"http://127.0.0.1:{settings.web_port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                http_json(f"{web}/report")
                break
            except OSError:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"the sink did not come up; see {data_dir / 'worker.log'}") from None
                time.sleep(0.5)
        if not args.preload:
            until_workers_hold(data_dir, args.workers, args.partitions, settings.topic(topics.PACKED))
            time.sleep(5)  # let the consumer groups settle before the clock starts
            cpu_before = sum(cpu_seconds(process.pid) for process in processes)
            started = time.time()
            send_paced(sender, producer, order, args.rate, started)
            produced = time.time() - started

        while lag(settings) > 0:
            if any(process.poll() is not None for process in processes):
                raise SystemExit(f"a process died; see the logs in {data_dir}")
            time.sleep(0.2)
        decisions_done = time.time() - started
        count_sql = {"query": "SELECT count() FROM server_messages FINAL"}
        while http_json(f"{web}/sql", count_sql)["rows"][0][0] < messages:
            time.sleep(0.2)
        clickhouse_done = time.time() - started
        cpu = sum(cpu_seconds(process.pid) for process in processes) - cpu_before
        rss = sum(peak_rss_mb(process.pid) for process in processes)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)

    records = _record_count(settings, raw)
    decisions = read_decisions(settings)
    stamps = _decision_timestamps(settings)
    # Preloaded lines wait for the processes to start: no latency to speak of.
    latencies = [] if args.preload else sorted(
        stamps[(d.server_id, d.version)] - sender.sent_at[key]
        for d in decisions if (key := (d.hostname, epoch_ms(d.decided_at))) in sender.sent_at
    )
    bare = asyncio.run(bare_consumer(settings.bootstrap_servers, raw, records))

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    rate = total / clickhouse_done
    pace = "before the start" if args.preload else f"at {args.rate:,.0f} lines/s" if args.rate else "at once"
    print(f"input: {total:,} lines, {messages:,} messages, {len(sources)} sources, {args.servers} servers, "
          f"{records:,} records, sent {pace} in {produced:.1f} s")
    print(f"pipeline: last decision after {decisions_done:.1f} s, last ClickHouse row after {clickhouse_done:.1f} s")
    print(f"decisions: {len(decisions):,} (latency measured for {len(latencies):,})")
    layout = f"{args.workers} workers and a sink" if args.workers else "one process"
    print(f"processes: {layout}, {args.partitions} partitions")
    print("| format | shape | lines | sent | lines/s | bare consumer, lines/s | ratio | p50 | p99 | CPU s per M lines "
          "| peak RSS |")
    print(f"| {args.format} | {args.shape} | {total:,} | {pace} | {rate:,.0f} | {total / bare:,.0f} | "
          f"1 : {(total / bare) / rate:.1f} | {pct(0.50):,.0f} ms | {pct(0.99):,.0f} ms | {cpu / total * 1e6:,.0f} | "
          f"{rss:,.0f} MB |")


def send_paced(sender: Sender, producer: KafkaProducer | KcatPipe, order: list[tuple[int, int]], rate: float,
               started: float) -> None:
    """Every line, at `rate` lines/s in ticks of TICK_S, or all at once (rate 0)."""
    if not rate:
        pending: dict[int, list[int]] = {}
        for s, i in order:
            pending.setdefault(s, []).append(i)
        sender.send(pending)
    else:
        released = 0
        while released < len(order):
            due = min(len(order), int((time.time() - started) * rate) + 1)
            pending = {}
            for s, i in order[released:due]:
                pending.setdefault(s, []).append(i)
            sender.send(pending)
            producer.flush()
            released = due
            time.sleep(max(0.0, TICK_S - (time.time() - started) % TICK_S))
    producer.flush()
    if isinstance(producer, KcatPipe):
        producer.close()  # until kcat has delivered everything


def until_first_taken(settings, processes: list[subprocess.Popen], timeout: float = 180) -> float:
    """The time the repackers first committed on mail.logs.raw (polled every 0.1 s)."""
    admin = kafka_clients.admin(settings, "bench")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                group = topics.repack_group(settings)
                committed = admin.list_group_offsets(group).get(group, {})
            except KafkaError:
                committed = {}
            if any(meta.offset > 0 for meta in committed.values()):
                return time.time()
            if any(process.poll() is not None for process in processes):
                raise SystemExit("a process exited before it took any record")
            time.sleep(0.1)
        raise SystemExit(f"nothing was taken off mail.logs.raw in {timeout:.0f} s")
    finally:
        admin.close()


def start_processes(env: dict, data_dir: Path, workers: int) -> list[subprocess.Popen]:
    """`patchgate run`, or `patchgate sink` and `workers` times `patchgate worker`; the first one
    serves the report on the web port in `env`. Worker n keeps its tables in <data_dir>/worker<n>
    and answers on the next ports."""
    def start(role: str, name: str, **extra: str) -> subprocess.Popen:
        log = (data_dir / f"{name}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "pipeline", role], env={**env, **extra}, cwd=ROOT,
                                stdout=log, stderr=log)

    if not workers:
        return [start("run", "worker")]
    port = int(env["PATCHGATE_WEB_PORT"])
    return [start("sink", "worker")] + [
        start("worker", f"worker{n}", PATCHGATE_DATA_DIR=str(data_dir / f"worker{n}"), PATCHGATE_WEB_PORT=str(port + n))
        for n in range(1, workers + 1)]


def until_workers_hold(data_dir: Path, workers: int, partitions: int, raw: str, timeout: float = 180) -> None:
    """With separate workers: until each holds raw partitions and together all of them."""
    if not workers:
        return
    port = int(os.environ.get("PATCHGATE_WEB_PORT", "6067"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            held = [{p for p in http_json(f"http://127.0.0.1:{port + n}/health").get("partitions", [])
                     if p.startswith(f"{raw}/")} for n in range(1, workers + 1)]
            if all(held) and len(set().union(*held)) == partitions:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the workers did not share the partitions; see the logs in {data_dir}")


def _record_count(settings, name: str) -> int:
    consumer = kafka_clients.consumer(settings)
    partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    return sum(ends.values())


def _decision_timestamps(settings) -> dict[tuple[str, int], float]:
    name = settings.topic(topics.DECISIONS)
    consumer = kafka_clients.consumer(settings, consumer_timeout_ms=5000)
    partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    stamps = {}
    for message in consumer:
        record = ENFORCEMENT_DECISION.decode(message.value)
        stamps[(record["server_id"], record["version"])] = message.timestamp / 1000
    consumer.close()
    return stamps


if __name__ == "__main__":
    main()
