"""`patchgate mta` on the real broker: cache from mail.decisions, many clients, bad clients, no broker."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

from pipeline import kafka_clients
from pipeline.domain.policy import Decision
from pipeline.streaming import records, topics
from pipeline.streaming.avro import ENFORCEMENT, ENFORCEMENT_DECISION

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "550 5.7.230 Connecting server version is out-of-date; connection blocked for 60 mins/hr."
THROTTLE = "450 4.7.230 Connecting server version is out-of-date; connection throttled for 60 mins/hr."


def decision(host, stage, throttle, block, version=1):
    return Decision(
        server_id=host, org=None, hostname=host, product="Exchange2013", build="15.0.1497.2",
        status="unsupported" if stage else "current", stage=stage, throttle_minutes_per_hour=throttle,
        block_minutes_per_hour=block, first_detected=datetime(2026, 1, 1, tzinfo=timezone.utc),
        throttle_enabled_date=date(2026, 1, 31), blocking_enabled_date=date(2026, 3, 2), next_stage_start_date=None,
        next_stage_throttle_rate=None, next_stage_block_rate=None, recommended_builds=(), reason="test",
        smtp_reply=None, decided_at=datetime(2026, 4, 1, tzinfo=timezone.utc), version=version,
    )


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def ask(port, requests, close_early=False):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for request in requests:
            writer.write(request.encode())
            await writer.drain()
            if close_early:
                return answers
            answer = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
            answers.append(answer.decode().strip())
        return answers
    finally:
        writer.close()


def request(helo, address="192.0.2.10"):
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={address}\nclient_name=unknown\n"
            f"helo_name={helo}\nsender=a@b.example\nrecipient=jo@example.net\n\n")


def start_mta(env, port, cache):
    return subprocess.Popen([sys.executable, "-m", "pipeline", "mta", "--port", str(port), "--cache", str(cache)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_blocking(port, host="old.example", timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if asyncio.run(ask(port, [request(host)])) == [f"action={BLOCK}"]:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("the policy service never answered from the decisions")


def test_policy_service_many_clients_bad_clients_and_no_broker(pipeline_env, read_topic, tmp_path):
    settings, env = pipeline_env
    producer = kafka_clients.producer(settings, acks="all")
    for d in (decision("old.example", 8, 0, 60), decision("slow.example", 5, 60, 0), decision("fine.example", 0, 0, 0),
              decision("old.example", 7, 30, 20, version=0)):  # an older version arriving late changes nothing
        producer.send(settings.topic(topics.DECISIONS), key=d.server_id.encode(),
                      value=ENFORCEMENT_DECISION.encode(records.decision_record(d)))
    producer.flush()
    port, cache = free_port(), tmp_path / "cache.json"
    mta = start_mta(env, port, cache)
    try:
        wait_until_blocking(port)

        async def crowd():
            good = [ask(port, [request("old.example"), request("SLOW.example."), request("fine.example"),
                               request("unknown", "198.51.100.200")]) for _ in range(200)]
            bad = [ask(port, ["no equals sign here\n\n"]), ask(port, ["client_address=1.2.3.4\nhelo_na"], close_early=True),
                   ask(port, ["x=" + "y" * 20000 + "\n\n"], close_early=True)]
            return await asyncio.gather(*good, *bad, return_exceptions=True)

        started = time.perf_counter()
        results = asyncio.run(crowd())
        elapsed = time.perf_counter() - started
        assert results[:200] == [[f"action={BLOCK}", f"action={THROTTLE}", "action=DUNNO", "action=DUNNO"]] * 200
        assert results[200] == ["action=DUNNO"]
        assert asyncio.run(ask(port, [request("old.example")])) == [f"action={BLOCK}"], "still serving after bad clients"
        assert elapsed < 30
    finally:
        mta.terminate()
        assert mta.wait(30) == 0, mta.stderr.read().decode()

    # The enforcement it applied is on mail.enforcement: 201 blocks and 200 throttles, plus the warm-up.
    applied = [ENFORCEMENT.decode(r.value) for r in read_topic(settings, topics.ENFORCEMENT)]
    assert sum(a["action"] == "throttle" for a in applied) == 200
    assert sum(a["action"] == "block" for a in applied) >= 201
    assert {a["server_id"] for a in applied} == {"old.example", "slow.example"}

    # Without the broker, a restart still enforces what the cache holds.
    offline_env = {**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    mta = start_mta(offline_env, port, cache)
    try:
        wait_until_blocking(port, timeout=30)
    finally:
        mta.terminate()
        mta.wait(30)
