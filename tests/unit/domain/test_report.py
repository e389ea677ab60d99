from datetime import UTC, date, datetime, timezone

from pipeline.domain.policy import Decision
from pipeline.domain.report import EVALUATE_KEYS, evaluate_row, iso_utc


def test_evaluate_row_has_exactly_the_contract_keys_in_order():
    decision = Decision(
        server_id="contoso.example/ex13.contoso.example", org="contoso.example", hostname="ex13.contoso.example",
        product="Exchange2013", build="15.0.1497.2", status="unsupported", stage=2,
        throttle_minutes_per_hour=5, block_minutes_per_hour=0,
        first_detected=datetime(2026, 1, 2, 23, 53, 27, 5000, tzinfo=UTC),
        throttle_enabled_date=date(2026, 2, 1), blocking_enabled_date=date(2026, 3, 3),
        next_stage_start_date=date(2026, 2, 11), next_stage_throttle_rate=10, next_stage_block_rate=0,
        recommended_builds=(), reason="Exchange2013 is out of support (build 15.0.1497.2)",
        smtp_reply="450 ...", decided_at=datetime(2026, 2, 2, tzinfo=UTC), version=2,
    )
    row = evaluate_row(decision)
    assert tuple(row) == EVALUATE_KEYS
    assert row["server"] == "ex13.contoso.example" and row["org"] == "contoso.example"
    assert row["first_detected"] == "2026-01-02T23:53:27.005Z"
    assert row["next_stage_start_date"] == "2026-02-11"
    assert row["recommended_builds"] == []


def test_times_are_utc_with_z():
    from datetime import timedelta

    eastern = timezone(timedelta(hours=-5))
    assert iso_utc(datetime(2026, 1, 2, 18, 0, tzinfo=eastern)) == "2026-01-02T23:00:00.000Z"
    assert iso_utc(None) is None
