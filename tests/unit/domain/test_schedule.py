from datetime import UTC, date, datetime, timedelta

from pipeline.domain.config import Pause, PolicyConfig
from pipeline.domain.pauses import pause_intervals
from pipeline.domain.schedule import Step, schedule, step_at

FIRST = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CONFIG = PolicyConfig()


def test_without_pauses_each_stage_starts_its_start_day_after_the_first_sighting():
    steps = schedule(CONFIG.stages, FIRST, [])
    assert [(step.stage, step.start - FIRST) for step in steps] == [
        (stage.number, timedelta(days=stage.start_day)) for stage in CONFIG.stages]
    assert steps[-1] == Step(FIRST + timedelta(days=90), 8, 0, 60)


def test_a_pause_holds_the_first_stage_and_pushes_every_later_start_back():
    config = PolicyConfig(pauses=(Pause("contoso.example", date(2026, 2, 20), 5),))
    steps = schedule(config.stages, FIRST, pause_intervals(config, "contoso.example"))
    pause_start, pause_end = datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 2, 25, tzinfo=UTC)
    assert [(s.start, s.stage, s.paused) for s in steps[:5]] == [
        (FIRST, 1, False), (FIRST + timedelta(days=30), 2, False), (FIRST + timedelta(days=40), 3, False),
        (pause_start, 1, True), (pause_end, 3, False)]
    # Stage 4 was due on day 50 (2026-02-24), inside the pause: 5 days later.
    assert steps[5] == Step(FIRST + timedelta(days=55), 4, 20, 0)


def test_the_step_in_force_is_the_last_started():
    steps = schedule(CONFIG.stages, FIRST, [])
    assert step_at(steps, FIRST - timedelta(seconds=1)) is None
    assert step_at(steps, FIRST).stage == 1
    assert step_at(steps, FIRST + timedelta(days=30) - timedelta(milliseconds=1)).stage == 1
    assert step_at(steps, FIRST + timedelta(days=30)).stage == 2
    assert step_at(steps, FIRST + timedelta(days=4000)).stage == 8
