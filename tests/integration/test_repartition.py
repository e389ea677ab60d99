"""Growing a drained pipeline from 4 to 8 partitions (`patchgate repartition`) keeps every table's
state: the workers started on 8 partitions go on from it as if nothing had changed."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from collections import Counter

from pipeline.contracts import topics
from pipeline.contracts.topics import partition_for
from pipeline.domain.report import evaluate_row
from pipeline.edges import mta
from pipeline.edges.decision_cache import DecisionCache
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.evaluate import evaluate
from pipeline.settings import load_settings
from tests.integration.conftest import ROOT, Worker, _drained, _read_topic, isolated_env
from tests.integration.test_pipeline import CONFIG, SAMPLES, latest_by_server

TRACKING_LOG = "msgtrk/MSGTRK2026012001-1.LOG"
# Lines of the tracking log shipped before the growth: all but the last row, which only the
# Exchange 2007 #Fields header above it (parser state) reads right.
SPLIT = 15


def repartition(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "repartition", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def latest_values(settings, table: str) -> dict[tuple[int, bytes], bytes]:
    """(partition, key) -> the latest value of each key the table's changelog still holds."""
    latest: dict[tuple[int, bytes], bytes | None] = {}
    for record in _read_topic(settings, topics.changelog_topic(settings, table), prefixed=False):
        latest[(record.partition, record.key)] = record.value
    return {place: value for place, value in latest.items() if value is not None}


def test_growing_from_4_to_8_partitions_keeps_the_tables(tmp_path, monkeypatch):
    # A copy of the samples in a folder where the tracking log's key (its path) changes partition.
    logs = next(tmp_path / f"logs{n}" for n in range(100)
                if partition_for(str(tmp_path / f"logs{n}" / TRACKING_LOG).encode(), 4)
                != partition_for(str(tmp_path / f"logs{n}" / TRACKING_LOG).encode(), 8))
    shutil.copytree(SAMPLES, logs)
    tracking = logs / TRACKING_LOG
    lines = tracking.read_bytes().splitlines(keepends=True)
    tracking.write_bytes(b"".join(lines[:SPLIT]))
    checkpoint = tmp_path / "ship-checkpoint.json"

    settings, env = isolated_env(tmp_path / "data", config=CONFIG)
    ship(settings, [str(logs)], checkpoint=checkpoint)
    worker = Worker(env, tmp_path / "before.log")
    # An MTA's follower, running through the growth: it must take the new partitions by itself.
    monkeypatch.setattr(mta, "PARTITIONS_CHECK_S", 1.0)
    follower = mta.DecisionFollower(settings, DecisionCache())
    try:
        _drained(settings, worker)
        follower.start()
        refused = repartition(env, "--to", "8")
        assert refused.returncode == 2 and "live members" in refused.stderr, refused.stderr
    finally:
        worker.stop()
    before = read_decisions(settings)
    states_before = latest_values(settings, topics.SERVER_STATE_TABLE)

    assert repartition(env, "--to", "4").returncode == 2
    grown = repartition(env, "--to", "8")
    assert grown.returncode == 0, grown.stderr
    assert "grew 12 topics from 4 to 8 partitions" in grown.stdout, grown.stdout

    # Every server's state sits only where its observations now arrive, unchanged.
    states = latest_values(settings, topics.SERVER_STATE_TABLE)
    servers = {key for _, key in states if not key.startswith(b"\0")}
    assert servers == {key for _, key in states_before if not key.startswith(b"\0")}
    moved = [key for key in servers if partition_for(key, 8) != partition_for(key, 4)]
    assert moved, "no server changed partition: the test shows nothing"
    assert {(partition_for(key, 8), key) for key in servers} == {place for place in states if place[1] in servers}
    values = {key: value for (_, key), value in states.items()}
    assert values == {key: value for (_, key), value in states_before.items()}
    parser_states = latest_values(settings, topics.PARSER_STATE_TABLE)
    assert (partition_for(str(tracking).encode(), 8), str(tracking).encode()) in parser_states

    # The rest of the tracking log, and a Postfix log's servers 45 days later (a later stage), read
    # by a worker on 8 partitions.
    with tracking.open("ab") as handle:
        handle.write(b"".join(lines[SPLIT:]))
    later = logs / "later" / "mx2-mail.log"
    later.parent.mkdir()
    later.write_bytes((SAMPLES / "postfix" / "mx2-mail.log").read_bytes().replace(b"Mar 7 ", b"Apr 21 "))
    env["PATCHGATE_PARTITIONS"] = "8"
    settings = load_settings(None, environ=env)
    ship(settings, [str(logs)], checkpoint=checkpoint)
    worker = Worker(env, tmp_path / "after.log")
    try:
        _drained(settings, worker)
    finally:
        worker.stop()

    decisions = read_decisions(settings)
    # Versions go on from where they were: each server's run 1..n once, with its first detection kept.
    versions = Counter((d.hostname, d.org, d.version) for d in decisions)
    assert [key for key, count in versions.items() if count > 1] == []
    decided_after = {(d.server_id, d.version) for d in decisions} - {(d.server_id, d.version) for d in before}
    decided_before = {d.server_id for d in before}
    assert {server for server, _ in decided_after if server in decided_before
            and partition_for(server.encode(), 8) != partition_for(server.encode(), 4)}, \
        "no server that changed partition was decided again: the test shows nothing"
    latest = latest_by_server(decisions)
    for key, decision in latest.items():
        assert sorted(v for h, o, v in versions if (h, o) == key) == list(range(1, decision.version + 1)), key
    for key, decision in latest_by_server(before).items():
        assert latest[key].first_detected == decision.first_detected, key

    # The MTA's follower has every server's latest decision, those on the new partitions too.
    newest = {decision.server_id: decision.version for decision in latest.values()}

    def followed() -> dict:
        return {server: (found.version if (found := follower.cache.held(server)) else None) for server in newest}
    deadline = time.monotonic() + 30
    while followed() != newest and time.monotonic() < deadline:
        time.sleep(0.5)
    follower.stopping.set()
    assert followed() == newest

    # And the stream still agrees with `patchgate evaluate` on the whole files.
    policy_settings = load_settings(CONFIG, environ={})
    for key, decision in latest.items():
        out = io.StringIO()
        evaluate(policy_settings, [str(logs)], decision.decided_at.isoformat(), out, io.StringIO())
        rows = {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}
        assert rows[key] == evaluate_row(decision), key
