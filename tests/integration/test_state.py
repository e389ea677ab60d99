"""Parser state on the real broker: it stays small whatever the input, and one-line records
(Filebeat, Fluent Bit, Vector) give the same decisions as packed ones."""
from __future__ import annotations

import io
import json
from pathlib import Path

from pipeline import kafka_clients
from pipeline.contracts import topics
from pipeline.domain.parsers.msgtrk import MAX_KNOWN_HOSTS
from pipeline.domain.report import evaluate_row
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.evaluate import evaluate
from pipeline.files import chunks, expand

TESTS = Path(__file__).resolve().parents[1]


def test_10000_open_postfix_messages_keep_every_table_value_small(pipeline_env, start_worker, drained, read_topic,
                                                                  tmp_path):
    settings, _ = pipeline_env
    log = tmp_path / "mail.log"
    # Over 4,096 client host names (MAX_KNOWN_HOSTS) among them: the bound on learnt names is reached.
    with log.open("w") as handle:
        for n in range(10_000):
            handle.write(f"2026-02-16T11:{n // 6000 % 60:02d}:{n // 100 % 60:02d}.{n % 100:02d}0000+00:00 mx1 "
                         f"postfix/smtpd[{n % 999}]: Q{n:09d}: client=h{n % 5000}.example[192.0.2.{n % 250}]\n")
    ship(settings, [str(log)])
    worker = start_worker()
    drained(settings, worker, timeout=300)

    def changelog(table):
        return read_topic(settings, f"{settings.app_id}-{table}-changelog", prefixed=False)

    opened = changelog(topics.OPEN_MESSAGES_TABLE)
    written = [r for r in opened if r.value is not None]
    states = [r for r in changelog(topics.PARSER_STATE_TABLE) if r.key == str(log.resolve()).encode()]
    assert len({r.key for r in written}) == 10_000
    # One small entry per queue id, and a source state that does not grow with them.
    assert max(len(r.value) for r in written) < 300
    holding = [r for r in states if json.loads(r.value)["parser"]["open"]]
    assert max(len(r.value) for r in holding) < 1_000
    assert max(json.loads(r.value)["parser"]["open"] for r in holding) == 10_000
    # The file ended (2 s of quiet): every message was let go, as evaluate does at a file's end,
    # and the host names the messages taught the state stay within their bound.
    assert {r.key for r in opened if r.value is None} == {r.key for r in written}
    ended = json.loads(states[-1].value)
    assert ended["parser"]["open"] == 0 and len(ended["hosts"]) <= MAX_KNOWN_HOSTS


def test_one_line_records_give_the_decisions_packed_records_give(pipeline_env, start_worker, drained, tmp_path):
    """Each line of every sample file as its own Filebeat-shaped record, as shippers other than
    `patchgate ship` send them."""
    settings, _ = pipeline_env
    producer = kafka_clients.producer(settings, acks="all", linger_ms=5)
    samples = TESTS / "samples"
    for path in expand([str(samples)]):
        with path.open("rb") as handle:
            for chunk in chunks(handle):
                offset = chunk.first_offset
                for line in chunk.data.splitlines(keepends=True):
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    record = {"message": text, "log": {"file": {"path": str(path)}, "offset": offset}}
                    producer.send(settings.topic(topics.RAW), key=str(path).encode(), value=json.dumps(record).encode())
                    offset = None if offset is None else offset + len(line)
    producer.flush()
    worker = start_worker()
    drained(settings, worker)
    latest = {}
    for decision in read_decisions(settings):
        latest[(decision.hostname, decision.org)] = decision

    out = io.StringIO()
    evaluate(settings, [str(samples)], None, out, io.StringIO())
    offline = {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}
    assert set(latest) == set(offline)
    # Each server as of its own newest event (evaluate's default is the newest event of all).
    for key, decision in latest.items():
        out = io.StringIO()
        evaluate(settings, [str(samples)], decision.decided_at.isoformat(), out, io.StringIO())
        rows = {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}
        assert rows[key] == evaluate_row(decision), key
