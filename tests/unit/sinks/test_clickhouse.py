from datetime import date, datetime, timezone

from pipeline.domain.policy import Decision
from pipeline.sinks.clickhouse import ClickHouseSink, connect, create_tables


def decision(version, stage):
    return Decision(
        server_id="ex13mbx01.contoso.example", org=None, hostname="ex13mbx01.contoso.example",
        product="Exchange2013", build="15.0.1497.2", status="unsupported", stage=stage,
        throttle_minutes_per_hour=5 if stage == 2 else 0, block_minutes_per_hour=0,
        first_detected=datetime(2026, 1, 2, 23, 53, 27, tzinfo=timezone.utc),
        throttle_enabled_date=date(2026, 2, 1), blocking_enabled_date=date(2026, 3, 3),
        next_stage_start_date=date(2026, 2, 1 if stage == 1 else 11), next_stage_throttle_rate=5,
        next_stage_block_rate=0, recommended_builds=(), reason="Exchange2013 is out of support",
        smtp_reply=None, decided_at=datetime(2026, 1, 2 + version, tzinfo=timezone.utc), version=version,
    )


def test_batches_land_once_even_when_replayed(tmp_path):
    """The real ClickHouse engine (embedded chdb): a replayed batch with the same token is dropped."""
    client = connect(f"chdb://{tmp_path}/ch")
    create_tables(client)
    create_tables(client)  # idempotent at every start
    sink = ClickHouseSink(client)
    batch = [decision(1, 1), decision(2, 2)]
    sink.write_decisions(batch, "mail.decisions:0:0-1")
    sink.write_decisions(batch, "mail.decisions:0:0-1")
    rows = client.query("SELECT version, stage FROM decisions ORDER BY version").result_rows
    assert rows == [(1, 1), (2, 2)]
    latest = client.query("SELECT server, stage, version, next_stage_start_date FROM servers FINAL").result_rows
    assert latest == [("ex13mbx01.contoso.example", 2, 2, date(2026, 2, 11))]
    # The embedded engine serves one folder per process: let the next test open its own.
    client.close()
