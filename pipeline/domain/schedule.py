"""A vulnerable server's enforcement schedule: from which moment each stage applies, pauses included.

The policy computes it once per decision and hands it out with the decision; the MTAs apply the step
their wall clock falls in, the pages and notices render it. Nobody else works out a stage's date.
A schedule holds from the decision on until the next decision for the server replaces it (a new
build, a pause or an exemption granted later).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.domain.config import Stage
from pipeline.domain.pauses import Interval, enforcement_moment, paused_at, paused_between


@dataclass(frozen=True)
class Step:
    """From `start` until the next step's, the server's mail gets this stage's windows; `paused`:
    the org's pause holds it at the first stage (the clock stands still)."""

    start: datetime
    stage: int
    throttle_minutes_per_hour: int
    block_minutes_per_hour: int
    paused: bool = False


Schedule = tuple[Step, ...]


def stage_at(stages: tuple[Stage, ...], first: datetime, pauses: list[Interval], at: datetime
             ) -> tuple[Stage, Stage | None, bool]:
    """The stage enforced at `at` for a clock started at `first`, the stage after it (None at the
    last) and whether a pause holds it: paused time does not count, and while paused the first
    stage applies."""
    elapsed = at - first - paused_between(pauses, first, at)
    index = 0
    for i, stage in enumerate(stages):
        if elapsed >= timedelta(days=stage.start_day):
            index = i
    following = stages[index + 1] if index + 1 < len(stages) else None
    if paused_at(pauses, at):
        return stages[0], following, True
    return stages[index], following, False


def stage_start(first: datetime, stage: Stage, pauses: list[Interval]) -> datetime:
    """When `stage` begins for a clock started at `first`: its start day of unpaused time later."""
    return enforcement_moment(first, timedelta(days=stage.start_day), pauses)


def schedule(stages: tuple[Stage, ...], first: datetime, pauses: list[Interval]) -> Schedule:
    """Every change of the enforced stage from `first` on: each stage's start and each pause's edges."""
    moments = {first} | {stage_start(first, stage, pauses) for stage in stages}
    moments |= {edge for interval in pauses for edge in interval if edge > first}
    steps: list[Step] = []
    for moment in sorted(moments):
        stage, _, paused = stage_at(stages, first, pauses, moment)
        step = Step(moment, stage.number, stage.throttle_minutes, stage.block_minutes, paused)
        if not steps or (steps[-1].stage, steps[-1].paused) != (step.stage, step.paused):
            steps.append(step)
    return tuple(steps)


def step_at(steps: Schedule, at: datetime) -> Step | None:
    """The step in force at `at`: the last one started by then (None before the first)."""
    current = None
    for step in steps:
        if step.start > at:
            break
        current = step
    return current
