"""The pipeline under failure: a worker killed with SIGKILL mid-stream, and poison input."""
from __future__ import annotations

import importlib.util
import io
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from kafka import KafkaProducer

from pipeline.catalog_files import load_catalog
from pipeline.domain.replay import replay
from pipeline.domain.report import evaluate_row
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.evaluate import read_observations
from pipeline.sinks.clickhouse import connect
from pipeline.streaming import topics
from pipeline.streaming.admin import lag
from pipeline.streaming.avro import DEAD_LETTER, SERVER_OBSERVATION

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    spec = importlib.util.spec_from_file_location("make_msgtrk", ROOT / "bench" / "make_msgtrk.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_logs(folder: Path) -> list[str]:
    """Four servers, 45 days, 40 messages a day: about 15,000 lines."""
    make = load_generator()
    rng = random.Random(11)
    servers = [
        make.Server(f"ex{n}.crash.example", f"198.51.100.{n}", version, tuple(make.FIELDS_2013_LATER), "crash.example")
        for n, version in ((13, "15.00.1497.002"), (16, "15.01.2507.039"), (19, "15.02.1748.039"), (20, "15.02.1544.014"))
    ]
    folder.mkdir()
    paths = []
    for server in servers:
        path = folder / f"MSGTRK_{server.hostname.split('.')[0].upper()}.LOG"
        path.write_text(make.render(server, datetime(2026, 1, 1, tzinfo=timezone.utc), 45, 40, rng), newline="")
        paths.append(str(path))
    return paths


def test_kill_9_mid_stream_loses_nothing_and_stores_every_row_once(pipeline_env, start_worker, drained, read_topic, tmp_path):
    settings, _ = pipeline_env
    paths = write_logs(tmp_path / "logs")
    shipped = ship(settings, paths)
    worker = start_worker()
    # Kill once the worker is well into the input, while batches are in flight.
    deadline = time.monotonic() + 180
    while lag(settings, (topics.RAW,)) > shipped * 0.5 and time.monotonic() < deadline:
        assert worker.alive(), worker.tail()
        time.sleep(0.2)
    worker.kill()
    remaining = lag(settings)
    assert 0 < remaining < shipped, f"kill came too late or too early: lag {remaining} of {shipped}"

    restarted = start_worker()
    drained(settings, restarted, timeout=300)
    decisions = read_decisions(settings)
    assert restarted.stop() == 0, restarted.tail()

    # No decision lost: each server's versions run 1..n, and its latest decision is what a clean
    # offline replay of the same files gives.
    observed, _ = read_observations(paths, settings.policy, io.StringIO(), datetime.now(timezone.utc), keep_messages=True)
    expected = {d.server_id: evaluate_row(d) for d in replay(observed, settings.policy, load_catalog())}
    latest = {}
    for decision in decisions:
        latest[decision.server_id] = max(latest.get(decision.server_id, decision), decision, key=lambda d: d.version)
    assert {s: sorted({d.version for d in decisions if d.server_id == s}) for s in latest} == {
        s: list(range(1, d.version + 1)) for s, d in latest.items()}
    assert {s: evaluate_row(d)["stage"] for s, d in latest.items()} == {s: row["stage"] for s, row in expected.items()}
    assert {s: evaluate_row(d)["first_detected"] for s, d in latest.items()} == {
        s: row["first_detected"] for s, row in expected.items()}

    # Every row once in ClickHouse, after ReplacingMergeTree has merged what a replay repeated.
    messages = {(o.server_id, key) for o in observed for key in o.message_keys}
    client = connect(settings.clickhouse_dsn)
    try:
        for table in ("decisions", "server_state", "server_messages"):
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        stored = client.query("SELECT server_id, version FROM decisions").result_rows
        stored_messages = client.query("SELECT server_id, message_key FROM server_messages").result_rows
    finally:
        client.close()
    assert sorted(stored) == sorted({(d.server_id, d.version) for d in decisions})
    assert len(stored_messages) == len(set(stored_messages)) == len(messages)
    assert set(stored_messages) == messages
    assert read_topic(settings, topics.DEAD_LETTERS) == []


def test_poison_input_goes_to_the_dead_letter_topic_and_the_rest_flows(pipeline_env, start_worker, drained, read_topic,
                                                                      tmp_path):
    settings, _ = pipeline_env
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    raw, traces = settings.topic(topics.RAW), settings.topic(topics.TRACES)
    garbage = [
        (b"/var/log/strange.log", b"\x00\x01 this is not any mail log"),
        (b"/var/log/strange.log", b'{"message": "cut in the middle'),
        (b"/var/log/utf16.log", "\ufeffnot utf-8".encode("utf-16-le")),
    ]
    for key, value in garbage:
        producer.send(raw, key=key, value=value)
    producer.send(traces, key=b"x", value=b"\xc3\x01" + b"\x00" * 8 + b"\x02")  # unknown schema
    producer.send(settings.topic(topics.OBSERVATIONS), key=b"y", value=b"not avro at all")
    producer.send(settings.topic(topics.DECISIONS), key=b"z", value=SERVER_OBSERVATION.encode({
        "server_id": "z", "server": "z", "org": None, "event_time": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "build": None, "evidence": "x", "messages": b""}))  # a valid record of the wrong type
    producer.flush()
    # A bad line in the middle of a packed record: only that line is dead-lettered.
    sample = (ROOT / "deploy" / "samples" / "MSGTRK_EX16MBX01_20260210.LOG").read_bytes().split(b"\n")
    log = tmp_path / "MSGTRK_EX16MBX01_20260210.LOG"
    log.write_bytes(b"\n".join(sample[:103] + [b"2026-02-20T10:00:00.000Z,only,three\r"] + sample[103:]))
    ship(settings, [str(log)])

    worker = start_worker()
    drained(settings, worker)
    decisions = read_decisions(settings)
    # How many decisions lead to stage 2 depends on how many records the file took: versions run on.
    assert decisions[-1].hostname == "ex16mbx01.contoso.example" and decisions[-1].stage == 2
    assert [d.version for d in decisions] == list(range(1, len(decisions) + 1))

    letters = [DEAD_LETTER.decode(record.value) for record in read_topic(settings, topics.DEAD_LETTERS)]
    assert all(letter["raw"] for letter in letters)
    # At-least-once: a record read again after a rebalance is dead-lettered again, hence the sets.
    from_file = {(letter["line"], letter["offset"], letter["raw"], letter["reason"], letter["topic"])
                 for letter in letters if letter["source"] == str(log)}
    assert from_file == {(104, len(b"\n".join(sample[:103])) + 1, b"2026-02-20T10:00:00.000Z,only,three",
                          "3 values for the 30 columns of #Fields", settings.topic(topics.RAW))}

    def where(name, key):
        return f"{settings.topic(name)}/{_partition_of(read_topic, settings, name, key)}/0"

    found = {(letter["topic"].split(".", 1)[1], letter["source"], letter["reason"])
             for letter in letters if letter["source"] != str(log)}
    expected = {
        ("mail.logs.raw", "/var/log/strange.log", "unknown format: not a line of any supported log"),
        ("mail.logs.raw", "/var/log/strange.log", "broken JSON envelope: Unterminated string starting at (column 13)"),
        ("mail.logs.raw", "/var/log/utf16.log", "not UTF-8 at byte 0"),
        ("mail.traces", where(topics.TRACES, b"x"), "unknown writer schema fingerprint 0000000000000000"),
        ("mail.observations", where(topics.OBSERVATIONS, b"y"),
         "not an Avro single-object record (15 bytes, starts 6e6f)"),
    }
    assert expected <= found
    [wrong_type] = found - expected
    assert wrong_type[:2] == ("mail.decisions", where(topics.DECISIONS, b"z"))
    assert wrong_type[2].startswith("EnforcementDecision: cannot read body:")


def _partition_of(read_topic, settings, name, key):
    return next(r.partition for r in read_topic(settings, name) if r.key == key)
