"""`patchgate decisions` reading mail.decisions, a tombstone among its records."""
import json
import logging
from dataclasses import replace

import pytest

from pipeline.cli import main
from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT_DECISION
from pipeline.edges import decisions
from pipeline.settings import SOURCES


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch):
    for name in [source.env for source in SOURCES] + ["PATCHGATE_CONFIG"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def topic(decisions_topic, monkeypatch, kafka_answers):
    topic = decisions_topic(partitions=2, batch=1)
    monkeypatch.setattr(decisions.kafka_clients, "KafkaConsumer", lambda **config: topic)
    return topic


def test_a_tombstone_deletes_its_servers_decisions_and_the_others_are_printed(topic, make_decision, capsys, caplog):
    deleted, kept = (replace(make_decision(1, 1), server_id=name, hostname=name)
                     for name in ("ex01.contoso.example", "ex02.contoso.example"))
    topic.write(deleted, partition=0)
    topic.write(replace(deleted, version=2, stage=2), partition=0)
    topic.write(kept, partition=1)
    topic.delete(deleted.server_id, partition=0)
    topic.write(replace(kept, version=2, stage=2), partition=1)
    with caplog.at_level(logging.WARNING):
        assert main(["decisions"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["server"], row["stage"]) for row in printed] == [("ex02.contoso.example", 1),
                                                                   ("ex02.contoso.example", 2)]
    assert caplog.text == "", "a tombstone is not a record that could not be read"
    assert topic.closed


def test_a_server_decided_again_after_its_tombstone_is_read_from_there(topic, make_decision):
    server = make_decision(1, 1)
    topic.write(server)
    topic.delete(server.server_id)
    topic.write(replace(server, version=2, stage=2))
    assert [(d.version, d.stage) for d in decisions.read_decisions(decisions.Settings())] == [(2, 2)]


def test_the_latest_decisions_keep_the_higher_version_whatever_the_order_read(make_decision):
    """After `patchgate repartition`, a server's older decisions can be read after newer ones."""
    latest = records.latest_decisions()
    key = make_decision(1, 1).server_id.encode()
    for version in (2, 1):
        latest.add(key, ENFORCEMENT_DECISION.encode(records.decision_record(make_decision(version, version))))
    assert latest.by_key[key].version == 2
