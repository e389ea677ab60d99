"""Real message tracking log lines -> real broker -> real Faust worker -> decisions and ClickHouse rows."""
from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import kafka_clients
from pipeline.contracts import packing, topics
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.kafka_admin import lag
from pipeline.sinks.clickhouse import connect

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"
FILES = ["MSGTRK_EX13MBX01_20260102.LOG", "MSGTRK_EX16MBX01_20260210.LOG", "MSGTRK_EX19MBX01_20260301.LOG"]

EX13 = "ex13mbx01.contoso.example"
EX16 = "ex16mbx01.contoso.example"
EX19 = "ex19mbx01.fabrikam.example"
# First RECEIVE rows of the sample files: the first vulnerable observation of each server.
EX13_FIRST = datetime(2026, 1, 2, 23, 53, 27, tzinfo=UTC)
EX16_FIRST = datetime(2026, 2, 10, 23, 53, 43, tzinfo=UTC)


def test_sample_logs_become_decisions_and_report_rows(pipeline_env, start_worker, drained):
    settings, _ = pipeline_env
    assert ship(settings, [str(SAMPLES / name) for name in FILES]) == 560 + 280 + 140

    worker = start_worker()
    drained(settings, worker)
    decisions = sorted(read_decisions(settings), key=lambda d: (d.hostname, d.version))
    assert worker.stop() == 0, worker.tail()

    # A file shipped at once is folded in few batches: the stages in between may be skipped, the
    # latest decision is what the whole file says, and versions run without gaps.
    latest = {d.hostname: d for d in decisions}
    assert {h: (d.status, d.stage, d.throttle_minutes_per_hour, d.block_minutes_per_hour)
            for h, d in latest.items()} == {
        EX13: ("unsupported", 6, 30, 10), EX16: ("outdated", 2, 5, 0), EX19: ("current", 0, 0, 0)}
    for host, last in latest.items():
        assert [d.version for d in decisions if d.hostname == host] == list(range(1, last.version + 1))
    ex13 = [d for d in decisions if d.hostname == EX13]
    assert all(d.first_detected == EX13_FIRST and d.build == "15.0.1497.2" and d.product == "Exchange2013"
               for d in ex13)
    assert latest[EX13].smtp_reply == \
        "550 5.7.230 Connecting server version is out-of-date; connection blocked for 10 mins/hr."
    assert str(latest[EX13].next_stage_start_date) == "2026-03-23"
    assert latest[EX16].first_detected == EX16_FIRST
    assert latest[EX16].smtp_reply == \
        "450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr."
    assert latest[EX16].recommended_builds[-1] == "15.1.2507.61"

    client = connect(settings.clickhouse_dsn)
    try:
        stored = client.query("SELECT hostname, version, stage, decided_at FROM decisions FINAL "
                              "ORDER BY hostname, version").result_rows
        servers = client.query("SELECT server, status, stage, version, first_detected FROM servers "
                               "ORDER BY server").result_rows
    finally:
        client.close()
    assert [(h, v, s) for h, v, s, _ in stored] == [(d.hostname, d.version, d.stage) for d in decisions]
    assert [at.replace(tzinfo=UTC) for *_, at in stored] == [d.decided_at for d in decisions]
    assert [(s, st, stage, v) for s, st, stage, v, _ in servers] == [
        (EX13, "unsupported", 6, latest[EX13].version), (EX16, "outdated", 2, latest[EX16].version),
        (EX19, "current", 0, latest[EX19].version)]
    assert servers[0][4].replace(tzinfo=UTC) == EX13_FIRST


def test_lines_arriving_as_time_passes_move_a_server_through_every_stage(pipeline_env, start_worker):
    """Live traffic: each stage change is decided by the first observation at or after its boundary."""
    settings, _ = pipeline_env
    worker = start_worker()
    lines = (SAMPLES / "MSGTRK_EX13MBX01_20260102.LOG").read_bytes().splitlines(keepends=True)
    # The log holds one day per header block (five header lines, then the day's messages).
    starts = [i for i, line in enumerate(lines) if line.lstrip(b"\xef\xbb\xbf").startswith(b"#Software")]
    days = [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
    first_row = [datetime.fromisoformat(day[5][:24].decode().replace("Z", "+00:00")) for day in days]
    # The first day at or after each boundary travels alone, the days in between together; the
    # worker reads each record before the next is sent, as when lines arrive day after day.
    boundaries = [next(i for i, at in enumerate(first_row) if at >= EX13_FIRST + timedelta(days=d))
                  for d in (30, 40, 50, 60, 70)]
    cuts = sorted({0, 1, len(days)} | set(boundaries) | {b + 1 for b in boundaries})
    producer = kafka_clients.producer(settings, acks="all")
    sent = 0
    for first_day, end_day in itertools.pairwise(cuts):
        chunk = b"".join(line for day in days[first_day:end_day] for line in day)
        producer.send(settings.topic(topics.RAW), key=b"/live/MSGTRK_EX13MBX01.LOG", value=chunk,
                      headers=packing.headers(sent + 1, sent))
        producer.flush()
        sent += chunk.count(b"\n")
        deadline = time.monotonic() + 60
        while lag(settings) > 0:
            assert worker.alive() and time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
    producer.close()
    ex13 = read_decisions(settings)
    assert [(d.version, d.stage) for d in ex13] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    # Each decision comes with the record of the first day at or after its boundary, at that
    # record's newest event.
    for decision, start_day, day in zip(ex13, (0, 30, 40, 50, 60, 70), [0] + boundaries, strict=True):
        assert decision.decided_at >= EX13_FIRST + timedelta(days=start_day)
        assert decision.decided_at.date() == first_row[day].date(), (decision.stage, decision.decided_at)
        assert decision.first_detected == EX13_FIRST
