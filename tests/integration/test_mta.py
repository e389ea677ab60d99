"""`patchgate mta` on the real broker: cache from mail.decisions, many clients, bad clients, no broker."""
from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import kafka_clients
from pipeline.contracts import records, topics
from pipeline.contracts.avro import ENFORCEMENT, ENFORCEMENT_DECISION
from pipeline.domain.schedule import Step
from testkit.ports import free_port
from tests.conftest import decision as published_decision
from tests.integration.conftest import until_cached

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "550 5.7.230 Connecting server version is out-of-date; connection blocked for 60 mins/hr."
THROTTLE = "450 4.7.230 Connecting server version is out-of-date; connection throttled for 60 mins/hr."


def decision(host, stage, throttle, block, version=1):
    """`host`'s decision at `stage`: deferring mail `throttle` and refusing it `block` minutes an hour."""
    return published_decision(host, None, stage, version, status="unsupported" if stage else "current",
                              throttle_minutes_per_hour=throttle, block_minutes_per_hour=block)


async def ask(port, requests, close_early=False):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers: list[str] = []
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
            bad = [ask(port, ["no equals sign here\n\n"]),
                   ask(port, ["client_address=1.2.3.4\nhelo_na"], close_early=True),
                   ask(port, ["x=" + "y" * 20000 + "\n\n"], close_early=True)]
            return await asyncio.gather(*good, *bad, return_exceptions=True)

        started = time.perf_counter()
        results = asyncio.run(crowd())
        elapsed = time.perf_counter() - started
        assert results[:200] == [[f"action={BLOCK}", f"action={THROTTLE}", "action=DUNNO", "action=DUNNO"]] * 200
        assert results[200] == ["action=DUNNO"]
        still = asyncio.run(ask(port, [request("old.example")]))
        assert still == [f"action={BLOCK}"], "still serving after bad clients"
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


def test_the_mta_escalates_on_the_schedules_date_without_a_new_decision(pipeline_env, read_topic, tmp_path):
    """A decision taken at the server's last message, stage 1, whose schedule starts stage 8 a few
    seconds from now on the MTA's clock: the MTA blocks from then on, with no message and no new
    decision in between, and records the stage it applied."""
    settings, env = pipeline_env
    escalation = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    quiet = replace(decision("quiet.example", 1, 0, 0), schedule=(
        Step(datetime(2026, 1, 1, tzinfo=UTC), 1, 0, 0), Step(escalation, 8, 0, 60)))
    producer = kafka_clients.producer(settings, acks="all")
    producer.send(settings.topic(topics.DECISIONS), key=b"quiet.example",
                  value=ENFORCEMENT_DECISION.encode(records.decision_record(quiet)))
    producer.flush()
    port, cache = free_port(), tmp_path / "cache.json"
    mta = start_mta(env, port, cache)
    try:
        until_cached(cache, 1)
        before = asyncio.run(ask(port, [request("quiet.example")]))
        assert datetime.now(UTC) < escalation, "the MTA took too long to start for this test"
        assert before == ["action=DUNNO"]
        time.sleep(max(0.0, (escalation - datetime.now(UTC)).total_seconds()) + 0.2)
        assert asyncio.run(ask(port, [request("quiet.example")])) == [f"action={BLOCK}"]
    finally:
        mta.terminate()
        assert mta.wait(30) == 0, mta.stderr.read().decode()
    [applied] = [ENFORCEMENT.decode(r.value) for r in read_topic(settings, topics.ENFORCEMENT)]
    assert (applied["action"], applied["stage"], applied["decision_version"]) == ("block", 8, 1)


# Idle connections crowding the policy service: more than its limit, closed once idle.
CROWD, LIMIT, IDLE_S = 3000, 2500, 5.0


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def crowd_then_idle(port, pid):
    """An MTA's connection asking twice a second while CROWD connections open and say nothing. Its
    answers, how long each of the crowd stayed open, and the service's open files: before, the most
    seen while the crowd came, and after."""
    loop = asyncio.get_running_loop()
    mta_reader, mta_writer = await asyncio.open_connection("127.0.0.1", port)
    answers, crowd_gone = [], asyncio.Event()

    async def mta_asks():
        while not crowd_gone.is_set():
            mta_writer.write(request("old.example").encode())
            answers.append((await asyncio.wait_for(mta_reader.readuntil(b"\n\n"), 5)).decode().strip())
            await asyncio.sleep(0.5)

    async def stays_open():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = loop.time()
        try:
            await reader.read()
        except ConnectionResetError:
            pass
        writer.close()
        return loop.time() - opened

    asking = asyncio.create_task(mta_asks())
    await asyncio.sleep(0.5)
    before = most = descriptors(pid)
    crowd = []
    # 1000 a second: past the limit well within the idle timeout.
    for _ in range(0, CROWD, 50):
        crowd += [asyncio.create_task(stays_open()) for _ in range(50)]
        await asyncio.sleep(0.05)
        most = max(most, descriptors(pid))
    await asyncio.wait(crowd, timeout=IDLE_S + 10)
    after = descriptors(pid)
    crowd_gone.set()
    await asking
    mta_writer.close()
    return answers, [end.result() for end in crowd if end.done()], (before, most, after)


def test_idle_connections_are_closed_and_past_the_limit_new_ones_refused(pipeline_env, tmp_path):
    """Thousands of connections that say nothing neither stop the answers on an MTA's connection nor
    stay open past the idle timeout; past the limit a new one is closed at once, and the log says so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CROWD + 200:
        if hard != resource.RLIM_INFINITY and hard < CROWD + 200:
            pytest.skip(f"{CROWD} connections need more open files than the hard limit ({hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (CROWD + 200, hard))
    settings, env = pipeline_env
    producer = kafka_clients.producer(settings, acks="all")
    blocked = decision("old.example", 8, 0, 60)
    producer.send(settings.topic(topics.DECISIONS), key=blocked.server_id.encode(),
                  value=ENFORCEMENT_DECISION.encode(records.decision_record(blocked)))
    producer.flush()
    env = {**env, "PATCHGATE_MTA_IDLE_TIMEOUT": str(IDLE_S), "PATCHGATE_MTA_MAX_CONNECTIONS": str(LIMIT)}
    port, log = free_port(), tmp_path / "mta.log"
    with log.open("wb") as stderr:
        mta = subprocess.Popen([sys.executable, "-m", "pipeline", "mta", "--port", str(port),
                                "--cache", str(tmp_path / "cache.json")], env=env, cwd=ROOT, stderr=stderr)
    try:
        wait_until_blocking(port)
        answers, lifetimes, (before, most, after) = asyncio.run(crowd_then_idle(port, mta.pid))
    finally:
        mta.terminate()
        assert mta.wait(30) == 0, log.read_text()
    text = log.read_text()

    assert len(answers) >= 2 * IDLE_S and set(answers) == {f"action={BLOCK}"}, "the MTA was answered all along"
    assert len(lifetimes) == CROWD, "every connection of the crowd closed"
    # Each was closed at once (past the limit) or once idle, never left open longer. (Timed from when
    # this busy loop saw it open: later than the service did.)
    refused = [t for t in lifetimes if t < 1.5]
    idle = [t for t in lifetimes if IDLE_S - 1 <= t < IDLE_S + 3]
    assert len(refused) >= CROWD - LIMIT and len(refused) + len(idle) == CROWD, sorted(lifetimes)
    # Thousands held, never more than the limit (with the MTA's connection, and a refused one being
    # closed), and their files given back.
    assert before + 2000 <= most <= before + LIMIT + 2 and after <= before + 2, (before, most, after)
    # Counted in a few lines, not one a connection.
    over_limit = [int(n) for n in re.findall(rf"policy service: refused (\d+) connections: {LIMIT} open, "
                                             r"the mta.max_connections limit", text)]
    closed_idle = [int(n) for n in re.findall(r"policy service: closed (\d+) connections idle for 5 s", text)]
    assert sum(over_limit) == len(refused) and len(over_limit) <= 3, over_limit
    assert sum(closed_idle) == len(idle) and len(closed_idle) <= 3, closed_idle
    assert f"at most {LIMIT} connections, from any network, closed when idle for 5 s" in text
