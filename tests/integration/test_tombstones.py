"""Tombstones on mail.decisions, written to the real broker as an operator deletes a server's key:
`patchgate decisions` leaves the server out, and the MTA's follower drops it and follows on."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaProducer

from pipeline.contracts import records, topics
from pipeline.contracts.avro import ENFORCEMENT_DECISION
from pipeline.edges import mta, policy
from pipeline.edges.decision_cache import DecisionCache
from tests.conftest import decision as published_decision

ROOT = Path(__file__).resolve().parents[2]


def decision(host, stage, block=0, version=1):
    return published_decision(host, None, stage, version, block_minutes_per_hour=block)


def publish(producer, topic, *decisions):
    for d in decisions:
        producer.send(topic, key=d.server_id.encode(), value=ENFORCEMENT_DECISION.encode(records.decision_record(d)))
    producer.flush()


def delete(producer, topic, server_id):
    producer.send(topic, key=server_id.encode(), value=None).get(timeout=30)


def wait_for(done, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def test_a_tombstone_on_mail_decisions_deletes_its_server_for_every_reader(pipeline_env, tmp_path, caplog):
    settings, env = pipeline_env
    topic = settings.topic(topics.DECISIONS)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    deleted, kept = decision("old.example", 8, block=60), decision("slow.example", 5)
    try:
        publish(producer, topic, deleted, decision("old.example", 8, block=60, version=2), kept)
        delete(producer, topic, deleted.server_id)

        listed = subprocess.run([sys.executable, "-m", "pipeline", "decisions"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["server"] for line in listed.stdout.splitlines()] == ["slow.example"]

        cache = DecisionCache(tmp_path / "cache.json")
        follower = mta.DecisionFollower(settings, cache)
        with caplog.at_level(logging.INFO, logger="pipeline.edges.mta"):
            follower.start()
            try:
                assert follower.caught_up.wait(60), "the follower never caught up"
                assert cache.held(deleted.server_id) is None and cache.held(kept.server_id) == kept
                # While following: another tombstone, then a decision after it.
                delete(producer, topic, kept.server_id)
                newer = decision("new.example", 3)
                publish(producer, topic, newer)
                wait_for(lambda: cache.held(newer.server_id) == newer, "the follower reads past the tombstone")
                assert cache.held(kept.server_id) is None
            finally:
                follower.stopping.set()
                follower.join(15)
        assert not follower.is_alive()
        # Read from the start once: neither tombstone made it start over.
        assert sum("caught up" in message for message in caplog.messages) == 1
        assert not [message for message in caplog.messages if "cannot follow" in message]

        server = mta.PolicyServer(cache, lambda *applied: None)
        for host in ("old.example", "slow.example"):
            assert server.answer(["request=smtpd_access_policy", "client_address=192.0.2.1",
                                  f"client_name={host}", f"helo_name={host}"]) == policy.DUNNO
        restarted = DecisionCache(tmp_path / "cache.json")
        assert (len(restarted), restarted.held(newer.server_id)) == (1, newer), "the file holds no deleted server"
    finally:
        producer.close()
