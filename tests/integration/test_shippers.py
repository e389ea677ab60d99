"""Logs sent by the shippers sites already run, one Kafka record per line and no patchgate headers:
rsyslog (imfile and omkafka, Debian's rsyslog-kafka, with deploy/shippers/rsyslog-patchgate.conf)
for Postfix logs, kcat (`-P`, keyed by the file's path) for Exchange tracking and receive logs.
The stream decides as `evaluate` does on the same files."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kafka import TopicPartition

from pipeline import kafka_clients
from pipeline.contracts import topics
from pipeline.contracts.avro import DEAD_LETTER
from pipeline.domain.report import evaluate_row
from pipeline.edges.decisions import read_decisions
from pipeline.evaluate import evaluate
from pipeline.settings import load_settings
from pipeline.web import client
from tests.integration.conftest import ROOT, Workers, _drained, _read_topic, isolated_env
from tests.integration.test_pipeline import CONFIG, SAMPLES, latest_by_server

RSYSLOG_CONF = ROOT / "deploy" / "shippers" / "rsyslog-patchgate.conf"


@pytest.fixture
def pipeline(tmp_path):
    settings, env = isolated_env(tmp_path / "data", config=CONFIG)
    workers = Workers(env, tmp_path)
    yield settings, workers
    workers.close()


def _copies(folder: Path, sources: list[Path]) -> list[Path]:
    folder.mkdir()
    return [Path(shutil.copy(source, folder)) for source in sources]


def _records_on(settings, topic: str) -> int:
    consumer = kafka_clients.consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _until_records(settings, count: int, shipper: subprocess.Popen | None = None, timeout: float = 60) -> None:
    raw = settings.topic(topics.RAW)
    deadline = time.monotonic() + timeout
    while (found := _records_on(settings, raw)) < count:
        assert shipper is None or shipper.poll() is None, f"the shipper exited with {shipper.returncode}"
        assert time.monotonic() < deadline, f"{found} of {count} lines on {raw} after {timeout} s"
        time.sleep(0.5)
    assert found == count, f"{found} records on {raw}, {count} lines shipped"


def _lines(files: list[Path]) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in files)


def assert_decided_as_evaluate_does(settings, files: list[Path]) -> dict:
    """The stream's servers are those `evaluate` finds in `files`, and each one's latest decision
    equals `evaluate --at <its last event>` on them; the lines `evaluate` finds bad are on the
    dead-letter topic, each with its file's path and the raw line. Returns the latest decisions."""
    latest = latest_by_server(read_decisions(settings))
    last_seen = {(s, o): t for s, o, t in client.sql(settings, "SELECT server, org, last_seen FROM servers")["rows"]}
    policy_settings = load_settings(CONFIG, environ={})
    paths = [str(path) for path in files]

    def evaluated(at) -> dict:
        out = io.StringIO()
        evaluate(policy_settings, paths, at, out, io.StringIO())
        return {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}

    assert set(evaluated(max(last_seen.values()))) == set(latest)
    for key, decision in latest.items():
        assert evaluated(last_seen[key])[key] == evaluate_row(decision), key
    errors = io.StringIO()
    evaluate(policy_settings, paths, None, io.StringIO(), errors)
    # `evaluate` names "file:line (byte n): reason"; a record of one bare line knows its file alone.
    bad = sorted((line.split(":", 1)[0], line.split(": ", 1)[1]) for line in errors.getvalue().splitlines())
    letters = [DEAD_LETTER.decode(record.value) for record in _read_topic(settings, topics.DEAD_LETTERS)]
    said = [(letter["source"], f"field {letter['field']}: {letter['reason']}" if letter["field"] else letter["reason"])
            for letter in letters]
    assert sorted(said) == bad
    assert all(letter["raw"] for letter in letters)
    return latest


def test_postfix_logs_through_rsyslog_decide_as_evaluate_does(pipeline, tmp_path):
    settings, workers = pipeline
    logs = _copies(tmp_path / "logs", sorted((SAMPLES / "postfix").glob("*.log")))
    spool = tmp_path / "spool"
    spool.mkdir()
    # The recommended file as it is, pointed at this test's files, broker, topic and spool.
    conf = RSYSLOG_CONF.read_text()
    for shipped, here in [('File="/var/log/mail.log"', f'File="{tmp_path / "logs"}/*.log"'),
                          ('"kafka1:9092"', f'"{settings.bootstrap_servers}"'),
                          ('topic="mail.logs.raw"', f'topic="{settings.topic(topics.RAW)}"'),
                          ("/var/spool/rsyslog", str(spool))]:
        assert shipped in conf
        conf = conf.replace(shipped, here)
    (tmp_path / "rsyslog.conf").write_text(f'global(workDirectory="{spool}")\n{conf}')
    worker = workers.start()
    rsyslog = subprocess.Popen(["rsyslogd", "-n", "-f", str(tmp_path / "rsyslog.conf"), "-i", str(tmp_path / "pid")],
                               stdout=(tmp_path / "rsyslog.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        _until_records(settings, _lines(logs), rsyslog)
    finally:
        rsyslog.terminate()
        rsyslog.wait(30)
    _drained(settings, worker)
    latest = assert_decided_as_evaluate_does(settings, logs)
    assert ("smtp.adatum.example", None) in latest, "a server of the Postfix samples"


def test_tracking_logs_through_kcat_decide_as_evaluate_does(pipeline, tmp_path):
    settings, workers = pipeline
    logs = _copies(tmp_path / "logs", sorted((SAMPLES / "msgtrk").glob("*.LOG")))
    worker = workers.start()
    for log in logs:
        sent = subprocess.run(["kcat", "-P", "-b", settings.bootstrap_servers, "-t", settings.topic(topics.RAW),
                               "-k", str(log), "-X", "topic.partitioner=murmur2_random", "-l", str(log)],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
    _until_records(settings, _lines(logs))
    _drained(settings, worker)
    latest = assert_decided_as_evaluate_does(settings, logs)
    assert any(decision.product.startswith("Exchange") for decision in latest.values())
