"""What the unit, integration and packaging tests share: the integration marker and a decision as
the worker publishes it (what bench/ uses too is in testkit/)."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from pipeline.domain.events import server_id_of
from pipeline.domain.policy import Decision


def pytest_collection_modifyitems(items):
    """Everything under tests/integration needs the real broker: mark it so `-m "not integration"` works."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def decision(server: str = "ex13mbx01.contoso.example", org: str | None = None, stage: int = 1, version: int = 1,
             **fields: Any) -> Decision:
    """The decision on `server` (of `org`, keyed as the worker keys it) at `stage`: Exchange 2013 build
    15.0.1497.2, out of support, first seen on 2 January 2026; `fields` set any other field."""
    return replace(Decision(
        server_id=server_id_of(server, org), org=org, hostname=server, product="Exchange2013", build="15.0.1497.2",
        status="unsupported", stage=stage, throttle_minutes_per_hour=0, block_minutes_per_hour=0,
        first_detected=datetime(2026, 1, 2, 23, 53, 27, tzinfo=UTC), throttle_enabled_date=date(2026, 2, 1),
        blocking_enabled_date=date(2026, 3, 3), next_stage_start_date=date(2026, 2, 1), next_stage_throttle_rate=5,
        next_stage_block_rate=0, recommended_builds=(), reason="Exchange2013 is out of support", smtp_reply=None,
        decided_at=datetime(2026, 1, 10, tzinfo=UTC), version=version,
    ), **fields)
