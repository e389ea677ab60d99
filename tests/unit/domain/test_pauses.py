from datetime import UTC, date, datetime, timedelta

from pipeline.domain.config import Pause, PolicyConfig
from pipeline.domain.events import ServerObservation
from pipeline.domain.pauses import enforcement_moment, pause_intervals, paused_between
from pipeline.domain.policy import assess, step
from tests.unit.conftest import CATALOG, T0


def test_the_yearly_budget_caps_pauses_per_org_and_calendar_year():
    config = PolicyConfig(pauses=(
        Pause("contoso.example", date(2026, 3, 1), 60),
        Pause("contoso.example", date(2026, 6, 1), 60),   # only 30 days of budget left in 2026
        Pause("contoso.example", date(2026, 12, 20), 20),  # 2026 used up; 2027 days count anew
        Pause("fabrikam.example", date(2026, 3, 1), 5),
    ))
    intervals = pause_intervals(config, "Contoso.Example")
    days = sum(((end - start) for start, end in intervals), timedelta())
    assert days == timedelta(days=60 + 30 + 8)
    assert intervals[1] == (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    assert intervals[2] == (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 9, tzinfo=UTC))
    assert pause_intervals(config, None) == []


def test_paused_time_is_not_counted_and_moves_the_schedule():
    intervals = [(datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC))]
    assert paused_between(intervals, T0, T0 + timedelta(days=30)) == timedelta(days=10)
    assert enforcement_moment(T0, timedelta(days=30), intervals) == T0 + timedelta(days=40)
    assert enforcement_moment(T0, timedelta(days=2), intervals) == T0 + timedelta(days=2)


def test_while_paused_only_reporting_goes_on_and_the_clock_stands_still():
    config = PolicyConfig(pauses=(Pause("contoso.example", date(2026, 2, 10), 20),))
    observation = ServerObservation.once("contoso.example/ex13.contoso.example", "ex13.contoso.example",
                                         "contoso.example", T0, "15.0.1497.2", "received-id")
    state, _ = step(None, observation, config, CATALOG)
    during = assess(state, datetime(2026, 2, 20, tzinfo=UTC), config, CATALOG)
    assert (during.stage, during.throttle_minutes_per_hour, during.smtp_reply) == (1, 0, None)
    assert during.reason.endswith("enforcement paused until 2026-03-02")
    # Day 30 would be 2026-02-04 (before the pause): stage 2 from then, and stage 3 comes 20 days late.
    assert assess(state, datetime(2026, 2, 5, tzinfo=UTC), config, CATALOG).stage == 2
    after = assess(state, datetime(2026, 3, 3, tzinfo=UTC), config, CATALOG)
    assert after.stage == 2
    assert after.next_stage_start_date == date(2026, 3, 6)
    assert assess(state, datetime(2026, 3, 6, 9, 30, tzinfo=UTC), config, CATALOG).stage == 3
