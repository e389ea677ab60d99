"""Shared fixtures of the unit tests: decisions as the enforce agent emits them."""
from datetime import date, datetime, timezone

import pytest

from pipeline.domain.policy import Decision


@pytest.fixture
def make_decision():
    return decision


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


@pytest.fixture
def kafka_answers(monkeypatch):
    """The commands' preflight (`kafka_clients.check_connection`) passes: for a test whose Kafka
    clients are stand-ins, so that no broker is looked for."""
    from pipeline import kafka_clients

    monkeypatch.setattr(kafka_clients, "check_connection", lambda settings, **limits: None)
