"""patchgate on a secured three-broker cluster (deploy/kafka/cluster.sh: SASL_SSL, SCRAM-SHA-512, the
StandardAuthorizer with nothing allowed without an ACL), each role as its own principal with the
rights `patchgate kafka-acls` prints, applied with Kafka's own kafka-acls tool. Every command is
configured by KAFKA_* and PATCHGATE_* variables alone."""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAuthorizationFailedError

from pipeline import kafka_clients
from pipeline.contracts import records, topics
from pipeline.contracts.avro import ENFORCEMENT, ENFORCEMENT_DECISION
from pipeline.domain.report import evaluate_row
from pipeline.evaluate import evaluate
from pipeline.settings import load_settings
from pipeline.web import client
from testkit.cluster import ClusterScript
from testkit.ports import free_port
from tests.integration.conftest import ROOT
from tests.integration.test_mta import BLOCK, ask, decision, request, wait_until_blocking
from tests.integration.test_pipeline import CONFIG, SAMPLES, assert_expected_without_gaps

PARTITIONS = 4


@dataclass
class SecuredPipeline:
    """One pipeline (its own topic prefix and app id) on the secured cluster, and its processes."""

    cluster: ClusterScript
    folder: Path
    base: dict
    processes: list = field(default_factory=list)

    def env(self, role: str, **extra: str) -> dict:
        return {**self.cluster.env(role, self.base), **extra}

    def settings(self, role: str, **extra: str):
        return load_settings(None, environ=self.env(role, **extra))

    def run(self, role: str, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline", *args], env=self.env(role, **extra), cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, role: str, *args: str, **extra: str) -> subprocess.Popen:
        log = (self.folder / f"{role}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=self.env(role, **extra), cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"== {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                         for log in sorted(self.folder.glob("*.log")))


# The run's wire format (make test-confluent) is the one setting every role keeps.
_WIRE = ("PATCHGATE_WIRE_FORMAT", "PATCHGATE_SCHEMA_REGISTRY_URL")


def _clean_environment() -> dict:
    """This process's environment without any Kafka or patchgate setting but the wire format: the
    roles bring theirs."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(("KAFKA_", "PATCHGATE_")) or name in _WIRE}


@pytest.fixture(scope="module")
def secured(secured_cluster, tmp_path_factory):
    """The pipeline's ACLs applied and its topics created by the operator; workers and sinks started
    by the tests that need them, stopped at the end."""
    folder = tmp_path_factory.mktemp("secured")
    run = uuid.uuid4().hex[:8]
    base = {**_clean_environment(), "PATCHGATE_TOPIC_PREFIX": f"sec-{run}.", "PATCHGATE_APP_ID": f"pg-sec-{run}",
            "PATCHGATE_PARTITIONS": str(PARTITIONS), "PATCHGATE_SOURCE_IDLE_SECONDS": "2",
            "PATCHGATE_CONFIG": str(CONFIG), "PATCHGATE_DATA_DIR": str(folder / "operator"),
            "PATCHGATE_WEB_PORT": str(free_port())}
    pipeline = SecuredPipeline(secured_cluster, folder, base)
    acls = pipeline.run("operator", "kafka-acls", "--command-config", secured_cluster.admin_config())
    assert acls.returncode == 0, acls.stderr
    secured_cluster.apply(acls.stdout.splitlines())
    made = pipeline.run("operator", "topics")
    assert made.returncode == 0, made.stderr
    yield pipeline
    pipeline.stop_all()


@pytest.fixture(scope="module")
def processed(secured):
    """The sample logs shipped by the shipper, processed by a worker and stored by a sink, each as
    its own principal."""
    secured.start("worker", "worker", PATCHGATE_DATA_DIR=str(secured.folder / "worker"),
                  PATCHGATE_WEB_PORT=str(free_port()))
    secured.start("sink", "sink", PATCHGATE_DATA_DIR=str(secured.folder / "sink"))
    shipped = secured.run("shipper", "ship", "--no-checkpoint", str(SAMPLES))
    assert shipped.returncode == 0, shipped.stderr
    waited = secured.run("operator", "wait", "--timeout", "240", timeout=300)
    assert waited.returncode == 0, f"{waited.stderr}\n{secured.logs()}"
    return secured


def test_every_topic_has_three_replicas_two_of_them_in_sync(secured):
    admin = kafka_clients.admin(secured.settings("admin"), "test")
    try:
        names = [spec.name for spec in topics.created_topics(secured.settings("operator"))]
        described = admin.describe_topics(names)
        assert {t["name"]: {len(p["replica_nodes"]) for p in t["partitions"]} for t in described} == {
            name: {3} for name in names}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
        assert {name: config["min.insync.replicas"]["value"] for name, config in configs["topic"].items()} == (
            dict.fromkeys(names, "2"))
    finally:
        admin.close()


def test_the_sample_logs_through_the_secured_cluster_decide_as_evaluate_does(processed):
    shown = processed.run("operator", "decisions")
    assert shown.returncode == 0, shown.stderr
    decisions = [records.decision_from_value(value) for value in _decision_values(processed)]
    latest = assert_expected_without_gaps(decisions)
    assert len(shown.stdout.splitlines()) == len(decisions)
    # The sink (its own principal) stored them: each server's latest equals `evaluate` at its last event.
    sink_settings = processed.settings("sink")
    stored = client.sql(sink_settings, "SELECT server, org, last_seen FROM servers")["rows"]
    last_seen = {(server, org): seen for server, org, seen in stored}
    policy_settings = load_settings(CONFIG, environ={})
    for key, decided in latest.items():
        out = io.StringIO()
        evaluate(policy_settings, [str(SAMPLES)], last_seen[key], out, io.StringIO())
        rows = {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}
        assert rows[key] == evaluate_row(decided), key
    report = processed.run("operator", "report", "--json")
    assert report.returncode == 0 and len(report.stdout.splitlines()) == len(latest), report.stderr


def _decision_values(pipeline: SecuredPipeline) -> list[bytes]:
    consumer = kafka_clients.consumer(pipeline.settings("admin"))
    try:
        name = pipeline.settings("operator").topic(topics.DECISIONS)
        partitions = [TopicPartition(name, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            values += [m.value for batch in consumer.poll(timeout_ms=1000).values() for m in batch]
        return values
    finally:
        consumer.close()


def test_operator_commands_reach_the_running_worker(processed):
    paused = processed.run("operator", "pause", "contoso.example", "--days", "3", "--reason", "migration")
    assert paused.returncode == 0 and paused.stdout.startswith("applied: "), paused.stdout + paused.stderr
    for command in (["resume", "contoso.example"],
                    ["exempt", "relay*.fabrikam.example", "--until", "2027-01-15", "--reason", "appliance"],
                    ["unexempt", "relay*.fabrikam.example"]):
        done = processed.run("operator", *command)
        assert done.returncode == 0 and done.stdout.startswith("applied: "), done.stdout + done.stderr
    noticed = processed.run("notify", "notify")
    assert noticed.returncode == 0, noticed.stderr


def test_the_mta_reads_decisions_and_writes_enforcement_as_itself(processed, tmp_path):
    # A decision to enforce, published as the worker publishes it.
    worker = kafka_clients.producer(processed.settings("worker"), acks="all")
    stage_eight = decision("old.example", 8, 0, 60)
    worker.send(processed.settings("worker").topic(topics.DECISIONS), key=b"old.example",
                value=ENFORCEMENT_DECISION.encode(records.decision_record(stage_eight))).get(timeout=30)
    worker.close()
    port = free_port()
    mta = processed.start("mta", "mta", "--port", str(port), "--cache", str(tmp_path / "cache.json"))
    wait_until_blocking(port)
    assert asyncio.run(ask(port, [request("old.example")] * 3)) == [f"action={BLOCK}"] * 3
    mta.terminate()
    assert mta.wait(30) == 0
    consumer = kafka_clients.consumer(processed.settings("admin"), consumer_timeout_ms=10_000)
    partitions = [TopicPartition(processed.settings("admin").topic(topics.ENFORCEMENT), p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    applied = [ENFORCEMENT.decode(message.value) for message in consumer]
    consumer.close()
    assert sum(a["server_id"] == "old.example" and a["action"] == "block" for a in applied) >= 4


def test_a_role_is_refused_what_it_was_not_granted(secured):
    mta = kafka_clients.producer(secured.settings("mta"), acks="all", max_block_ms=15_000)
    try:
        for name in (topics.DECISIONS, topics.CONTROL):
            with pytest.raises(TopicAuthorizationFailedError):
                mta.send(secured.settings("mta").topic(name), key=b"any.example", value=b"forged").get(timeout=30)
    finally:
        mta.close()
    # Without the right to describe mail.decisions the shipper does not even learn its partitions: a
    # read of one it names is answered with nothing (and the broker logs the denial).
    shipper = kafka_clients.consumer(secured.settings("shipper"))
    try:
        assert not shipper.partitions_for_topic(secured.settings("shipper").topic(topics.DECISIONS))
        shipper.assign([TopicPartition(secured.settings("shipper").topic(topics.DECISIONS), 0)])
        shipper.seek(TopicPartition(secured.settings("shipper").topic(topics.DECISIONS), 0), 0)
        assert shipper.poll(timeout_ms=5_000) == {}
    finally:
        shipper.close()
    refused = secured.run("shipper", "decisions")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "not readable by this principal" in refused.stderr, refused.stderr


# Each subcommand that talks to Kafka, as it is run (`notify` mails nobody: no contacts are set).
CONNECTING = [["topics"], ["worker"], ["sink"], ["run"], ["ship", str(SAMPLES)], ["wait"], ["decisions"],
              ["pause", "contoso.example", "--days", "1", "--reason", "r"], ["notify"], ["mta", "--port", "0"],
              ["repartition", "--to", "8"]]


@pytest.mark.parametrize("command", CONNECTING, ids=lambda command: command[0])
def test_a_wrong_password_stops_every_command_with_one_line(secured, command):
    environ = secured.env("operator", KAFKA_SASL_PASSWORD="not-the-password")
    del environ["KAFKA_SASL_PASSWORD_FILE"]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline", *command], env=environ, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "refused user 'patchgate-operator' (SCRAM-SHA-512): " in done.stderr
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("command", [["decisions"], ["worker"], ["mta", "--port", "0"]], ids=lambda c: c[0])
def test_an_untrusted_broker_certificate_stops_a_command_with_one_line(secured, command):
    environ = secured.env("operator")
    del environ["KAFKA_SSL_CAFILE"]  # the system's CAs do not know the cluster's
    done = subprocess.run([sys.executable, "-m", "pipeline", *command], env=environ, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert ": the broker's certificate is not trusted: " in done.stderr


def test_a_client_certificate_is_an_identity_on_a_mutual_tls_listener(secured):
    """The cluster's brokers talk to each other on listeners that want a client certificate (ports
    BASE+200...); a client with one is known by it (User:patchgate-client, granted nothing here)."""
    tls = Path(secured.env("operator")["KAFKA_SSL_CAFILE"]).parent
    mutual = {**secured.base, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29292,127.0.0.1:29293,127.0.0.1:29294",
              "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tls / "ca.pem")}
    with_certificate = {**mutual, "KAFKA_SSL_CERTFILE": str(tls / "client.pem"),
                        "KAFKA_SSL_KEYFILE": str(tls / "client.key")}
    known = subprocess.run([sys.executable, "-m", "pipeline", "decisions"], env=with_certificate, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert known.returncode == 1 and "not readable by this principal" in known.stderr, known.stderr
    unknown = subprocess.run([sys.executable, "-m", "pipeline", "decisions"], env=mutual, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1, unknown.stderr
    assert "want a client certificate (KAFKA_SSL_CERTFILE)" in unknown.stderr, unknown.stderr


def test_repartition_keeps_three_replicas(processed):
    waited = processed.run("operator", "wait", "--timeout", "120", timeout=180)
    assert waited.returncode == 0, waited.stderr
    processed.stop_all()
    grown = processed.run("operator", "repartition", "--to", str(PARTITIONS * 2), timeout=180)
    assert grown.returncode == 0, grown.stderr
    admin = kafka_clients.admin(processed.settings("admin"), "test")
    try:
        grown_topics = [spec.name for spec in topics.created_topics(processed.settings("operator"))
                        if not spec.single and spec.name != processed.settings("operator").topic(topics.NOTICES)]
        described = admin.describe_topics(grown_topics)
        assert {t["name"]: (len(t["partitions"]), {len(p["replica_nodes"]) for p in t["partitions"]})
                for t in described} == dict.fromkeys(grown_topics, (PARTITIONS * 2, {3}))
    finally:
        admin.close()
