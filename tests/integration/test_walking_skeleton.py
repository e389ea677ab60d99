"""Real message tracking log lines -> real broker -> real Faust worker -> decisions and ClickHouse rows."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.sinks.clickhouse import connect

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"
FILES = ["MSGTRK_EX13MBX01_20260102.LOG", "MSGTRK_EX16MBX01_20260210.LOG", "MSGTRK_EX19MBX01_20260301.LOG"]

EX13 = "ex13mbx01.contoso.example"
EX16 = "ex16mbx01.contoso.example"
EX19 = "ex19mbx01.fabrikam.example"
# First RECEIVE rows of the sample files: the first vulnerable observation of each server.
EX13_FIRST = datetime(2026, 1, 2, 23, 53, 27, tzinfo=timezone.utc)
EX16_FIRST = datetime(2026, 2, 10, 23, 53, 43, tzinfo=timezone.utc)


def test_sample_logs_become_decisions_and_report_rows(pipeline_env, start_worker, drained):
    settings, _ = pipeline_env
    assert ship(settings, [str(SAMPLES / name) for name in FILES]) == 560 + 280 + 140

    worker = start_worker()
    drained(settings, worker)
    decisions = sorted(read_decisions(settings), key=lambda d: (d.hostname, d.version))
    assert worker.stop() == 0, worker.tail()

    summary = [(d.hostname, d.version, d.status, d.stage, d.throttle_minutes_per_hour, d.block_minutes_per_hour)
               for d in decisions]
    assert summary == [
        (EX13, 1, "unsupported", 1, 0, 0),
        (EX13, 2, "unsupported", 2, 5, 0),
        (EX13, 3, "unsupported", 3, 10, 0),
        (EX13, 4, "unsupported", 4, 20, 0),
        (EX13, 5, "unsupported", 5, 30, 5),
        (EX13, 6, "unsupported", 6, 30, 10),
        (EX16, 1, "outdated", 1, 0, 0),
        (EX16, 2, "outdated", 2, 5, 0),
        (EX19, 1, "current", 0, 0, 0),
    ]
    ex13 = [d for d in decisions if d.hostname == EX13]
    assert all(d.first_detected == EX13_FIRST and d.build == "15.0.1497.2" and d.product == "Exchange2013" for d in ex13)
    assert ex13[0].decided_at == EX13_FIRST
    # Each stage change is decided by the first observation at or after its boundary (one message a day).
    for decision, start_day in zip(ex13[1:], (30, 40, 50, 60, 70)):
        boundary = EX13_FIRST + timedelta(days=start_day)
        assert boundary <= decision.decided_at < boundary + timedelta(days=1)
    assert ex13[-1].smtp_reply == "550 5.7.230 Connecting server version is out-of-date; connection blocked for 10 mins/hr."
    assert str(ex13[-1].next_stage_start_date) == "2026-03-23"
    ex16 = [d for d in decisions if d.hostname == EX16]
    assert [d.first_detected for d in ex16] == [EX16_FIRST, EX16_FIRST]
    assert ex16[1].smtp_reply == "450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr."
    assert ex16[1].recommended_builds[-1] == "15.1.2507.61"

    client = connect(settings.clickhouse_dsn)
    try:
        stored = client.query("SELECT hostname, version, stage, decided_at FROM decisions FINAL ORDER BY hostname, version").result_rows
        servers = client.query("SELECT server, status, stage, version, first_detected FROM servers ORDER BY server").result_rows
    finally:
        client.close()
    assert [(h, v, s) for h, v, s, _ in stored] == [(d.hostname, d.version, d.stage) for d in decisions]
    assert [at.replace(tzinfo=timezone.utc) for *_, at in stored] == [d.decided_at for d in decisions]
    assert [(s, st, stage, v) for s, st, stage, v, _ in servers] == [
        (EX13, "unsupported", 6, 6), (EX16, "outdated", 2, 2), (EX19, "current", 0, 1)]
    assert servers[0][4].replace(tzinfo=timezone.utc) == EX13_FIRST
