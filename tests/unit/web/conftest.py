"""Report rows and one server's page data as pipeline.sinks.report_queries reads them."""
from datetime import UTC, datetime

import pytest

from pipeline.contracts.records import schedule_records
from pipeline.domain.config import PolicyConfig
from pipeline.domain.pauses import pause_intervals
from pipeline.domain.schedule import schedule
from pipeline.sinks.queries import plain
from pipeline.sinks.report_queries import SERVER_COLUMNS

OUTDATED_FIRST = datetime(2026, 1, 2, 23, 53, 27, tzinfo=UTC)


def schedule_as_read(config: PolicyConfig | None = None, org: str = "contoso.example") -> list[dict]:
    """The schedule the policy gives ex16mbx01 (first detected OUTDATED_FIRST) as the report reads
    it from the decisions table."""
    config = config or PolicyConfig()
    steps = schedule(config.stages, OUTDATED_FIRST, pause_intervals(config, org))
    return plain(schedule_records(steps))

OUTDATED_ID = "contoso.example/ex16mbx01.contoso.example"  # window offset 44
RECOMMENDED = ["15.1.2507.75", "15.1.2507.73", "15.1.2507.72", "15.1.2507.71", "15.1.2507.69", "15.1.2507.66"]


def row(**values):
    return dict.fromkeys(SERVER_COLUMNS) | {"recommended_builds": []} | values


@pytest.fixture
def servers():
    return [
        row(server_id="ex13mbx01.contoso.example", server="ex13mbx01.contoso.example", product="Exchange2013",
            build="15.0.1497.2", status="unsupported", stage=1, first_detected="2026-02-01T08:00:00.000Z",
            next_stage_start_date="2026-03-03", next_stage_throttle_rate=5, next_stage_block_rate=0,
            reason="Exchange2013 is out of support <since 2023-04-11>", last_seen="2026-02-07T10:00:00.000Z"),
        row(server_id=OUTDATED_ID, server="ex16mbx01.contoso.example", org="contoso.example", product="Exchange2016",
            build="15.1.2507.39", status="outdated", stage=2, first_detected="2026-01-02T23:53:27.000Z",
            throttle_enabled_date="2026-02-01", blocking_enabled_date="2026-03-03",
            next_stage_start_date="2026-02-11", next_stage_throttle_rate=10, next_stage_block_rate=0,
            recommended_builds=RECOMMENDED, reason="build 15.1.2507.39 is below the Exchange2016 baseline 15.1.2507.61",
            last_seen="2026-02-08T10:00:00.000Z", messages_last_24h=4, deferred=3, rejected=0),
        row(server_id="mail.example", server="mail.example", status="unknown", stage=0, reason="no build seen",
            last_seen="2026-01-20T10:00:00.000Z"),
    ]


def control(command_id, action, target):
    return {"command_id": command_id, "issued_at": "2026-02-05T09:00:00.000Z", "action": action, "target": target,
            "start_date": "2026-02-05", "until_date": "2026-02-20", "reason": "migration", "issued_by": "ops",
            "source": "command", "outcome": "applied", "detail": ""}


@pytest.fixture
def outdated_page(servers):
    return {
        "row": servers[1],
        "newest_event": "2026-02-08T10:00:00.000Z",
        "history": [
            {"version": 1, "stage": 1, "status": "outdated", "build": "15.1.2507.39", "throttle_minutes_per_hour": 0,
             "block_minutes_per_hour": 0, "first_detected": "2026-01-02T23:53:27.000Z",
             "next_stage_start_date": "2026-02-01", "reason": "below", "smtp_reply": None,
             "decided_at": "2026-01-03T00:00:00.000Z"},
            {"version": 2, "stage": 2, "status": "outdated", "build": "15.1.2507.39", "throttle_minutes_per_hour": 5,
             "block_minutes_per_hour": 0, "first_detected": "2026-01-02T23:53:27.000Z",
             "next_stage_start_date": "2026-02-11", "reason": "below", "smtp_reply": "450 ...",
             "decided_at": "2026-02-02T09:00:00.000Z", "schedule": schedule_as_read()},
        ],
        "daily": [{"day": "2026-02-02", "messages": 7, "deferred": 0, "rejected": 0},
                  {"day": "2026-02-05", "messages": 4, "deferred": 3, "rejected": 0}],
        "control": [control("c1", "pause", "Contoso.example"), control("c2", "pause", "fabrikam.example"),
                    control("c3", "exempt", "*.contoso.example"), control("c4", "exempt", "ex13*")],
    }
