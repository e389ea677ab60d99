"""End-to-end throughput of the pipeline on the local broker, beside the ceiling of a bare consumer.

    bash deploy/kafka/kafka.sh start
    python bench/e2e_throughput.py [--events 200000] [--servers 500]

In one run:
1. a `patchgate worker` is started (embedded ClickHouse) and given time to join its group;
2. N message tracking log lines (Exchange 2013/2016 servers, one message every few hours each, so
   servers walk through the stages) are produced to mail.logs.raw, as `patchgate ship` sends them;
3. timed from the first send: until the worker has committed everything (the last decision is on
   mail.decisions) and until ClickHouse shows every message row;
4. a bare aiokafka consumer reads the same raw topic from the start: the ceiling for any Python
   consumer on this broker;
5. latency of each decision: its Kafka timestamp minus the send time of the line that caused it.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_msgtrk import FIELDS_2013_LATER  # noqa: E402

from pipeline.edges.decisions import read_decisions  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.streaming import topics  # noqa: E402
from pipeline.streaming.admin import ensure_topics, lag  # noqa: E402

BUILDS = ("15.00.1497.002", "15.01.2507.039", "15.01.2507.009")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def lines_for(server: int, count: int) -> tuple[str, list[tuple[str, datetime | None]]]:
    """A tracking log of one server: (file identity, [(line, event time or None for headers)])."""
    host = f"ex{server:04d}.bench.example"
    version = BUILDS[server % len(BUILDS)]
    header = ["#Software: Microsoft Exchange Server", f"#Version: {version}", "#Log-type: Message Tracking Log",
              f"#Date: {START:%Y-%m-%dT%H:%M:%S.000Z}", f"#Fields: {','.join(FIELDS_2013_LATER)}"]
    out = [(line, None) for line in header]
    step = timedelta(days=100) / max(count, 1)
    for n in range(count - len(header)):
        at = START + step * n + timedelta(milliseconds=server)
        row = {f: "" for f in FIELDS_2013_LATER}
        row.update({
            "date-time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "client-ip": "192.0.2.25", "client-hostname": f"app.{host}", "server-ip": "198.51.100.1",
            "server-hostname": host, "source": "SMTP", "event-id": "RECEIVE", "message-id": f"<{server}.{n}@{host}>",
            "total-bytes": str(2000 + n % 5000), "recipient-address": "jo@example.net", "recipient-count": "1",
            "message-subject": 'Report, "weekly"', "sender-address": f"app@{host}", "directionality": "Originating",
            "schema-version": version,
        })
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([row[f] for f in FIELDS_2013_LATER])
        out.append((buffer.getvalue(), at))
    return f"/bench/{host}/MSGTRK.LOG", out


def http_json(url: str, body: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def bare_consumer(bootstrap: str, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        started, seen = time.perf_counter(), 0
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="lines per second to send at (default: all at once, a backlog; below the pipeline's "
                             "throughput the latency shows processing rather than queueing)")
    args = parser.parse_args()
    run = f"bench-{uuid.uuid4().hex[:6]}"
    data_dir = ROOT / ".bench" / run
    env = {**os.environ, "PATCHGATE_TOPIC_PREFIX": f"{run}.", "PATCHGATE_APP_ID": run,
           "PATCHGATE_DATA_DIR": str(data_dir), "PATCHGATE_WEB_PORT": os.environ.get("PATCHGATE_WEB_PORT", "6067")}
    env.pop("CLICKHOUSE_URL", None)
    settings = load_settings(None, environ=env)
    ensure_topics(settings)

    per_server = args.events // args.servers
    sources = [lines_for(n, per_server) for n in range(args.servers)]
    total = sum(len(lines) for _, lines in sources)
    messages = sum(1 for _, lines in sources for _, at in lines if at)

    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "pipeline", "worker"], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        web = f"http://127.0.0.1:{settings.web_port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                http_json(f"{web}/report")
                break
            except OSError:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"worker did not come up; see {data_dir / 'worker.log'}")
                time.sleep(0.5)
        time.sleep(5)  # let the consumer group settle before the clock starts

        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20,
                                 compression_type="gzip", batch_size=256 * 1024)
        sent_at: dict[tuple[str, int], float] = {}
        raw = settings.topic(topics.RAW)
        started = time.time()
        # Interleave the servers as many shippers sending at once would.
        count = 0
        for index in range(per_server):
            for source, lines in sources:
                if index < len(lines):
                    count += 1
                    if args.rate and count % 50 == 0:
                        time.sleep(max(0.0, started + count / args.rate - time.time()))
                    line, at = lines[index]
                    value = json.dumps({"message": line, "file": source, "line": index + 1}).encode()
                    producer.send(raw, key=source.encode(), value=value)
                    if at is not None:
                        sent_at[(source.split("/")[2], int(at.timestamp() * 1000))] = time.time()
        producer.flush()
        produced = time.time() - started

        while lag(settings) > 0:
            if worker.poll() is not None:
                raise SystemExit(f"worker died; see {data_dir / 'worker.log'}")
            time.sleep(0.5)
        decisions_done = time.time() - started
        count_sql = {"query": "SELECT count() FROM server_messages FINAL"}
        while http_json(f"{web}/sql", count_sql)["rows"][0][0] < messages:
            time.sleep(0.5)
        clickhouse_done = time.time() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)

    decisions = read_decisions(settings)
    decided_times = _decision_timestamps(settings)
    latencies = sorted(
        decided_times[(d.server_id, d.version)] - sent_at[(d.hostname, int(d.decided_at.timestamp() * 1000))]
        for d in decisions if (d.hostname, int(d.decided_at.timestamp() * 1000)) in sent_at
    )
    bare = asyncio.run(bare_consumer(settings.bootstrap_servers, raw, total))

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    pace = f" at {args.rate:,.0f} lines/s" if args.rate else " at once"
    print(f"input: {total:,} lines ({messages:,} messages) from {args.servers} servers, sent{pace} in {produced:.1f} s")
    print(f"pipeline: last decision after {decisions_done:.1f} s = {total / decisions_done:,.0f} lines/s; "
          f"last ClickHouse row after {clickhouse_done:.1f} s = {total / clickhouse_done:,.0f} lines/s")
    print(f"bare aiokafka consumer of the same topic: {bare:.2f} s = {total / bare:,.0f} records/s")
    print(f"ratio pipeline / bare consumer: 1 : {(total / bare) / (total / clickhouse_done):.0f}")
    print(f"decisions: {len(decisions):,}; latency line sent -> decision on topic: "
          f"p50 {pct(0.50):,.0f} ms, p99 {pct(0.99):,.0f} ms (n={len(latencies)})")


def _decision_timestamps(settings) -> dict[tuple[str, int], float]:
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.streaming.avro import ENFORCEMENT_DECISION

    name = settings.topic(topics.DECISIONS)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, consumer_timeout_ms=5000)
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
