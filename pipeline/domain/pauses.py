"""Pauses: an org may stop throttling and blocking for a limited number of days per calendar year.

While paused, the enforcement clock stands still: paused time does not count towards the next
stage. Pauses are whole UTC days, granted in start order until the year's budget is used up.
"""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from pipeline.domain.config import PolicyConfig
from pipeline.domain.orgs import same_org

Interval = tuple[datetime, datetime]


def pause_intervals(config: PolicyConfig, org: str | None) -> list[Interval]:
    used: dict[int, int] = {}
    days = set()
    for pause in sorted((p for p in config.pauses if same_org(p.org, org)), key=lambda p: p.start):
        for offset in range(pause.days):
            day = pause.start + timedelta(days=offset)
            if day not in days and used.get(day.year, 0) < config.pause_budget_days:
                used[day.year] = used.get(day.year, 0) + 1
                days.add(day)
    intervals: list[Interval] = []
    for day in sorted(days):
        start = datetime.combine(day, time(), tzinfo=UTC)
        if intervals and intervals[-1][1] == start:
            intervals[-1] = (intervals[-1][0], start + timedelta(days=1))
        else:
            intervals.append((start, start + timedelta(days=1)))
    return intervals


def paused_between(intervals: list[Interval], start: datetime, end: datetime) -> timedelta:
    total = timedelta()
    for begin, finish in intervals:
        overlap = min(finish, end) - max(begin, start)
        if overlap > timedelta():
            total += overlap
    return total


def paused_at(intervals: list[Interval], moment: datetime) -> Interval | None:
    return next(((b, f) for b, f in intervals if b <= moment < f), None)


def enforcement_moment(start: datetime, elapsed: timedelta, intervals: list[Interval]) -> datetime:
    """When `elapsed` of unpaused time will have passed since `start`."""
    cursor, remaining = start, elapsed
    for begin, end in sorted(intervals):
        if end <= cursor:
            continue
        begin = max(begin, cursor)
        if cursor + remaining <= begin:
            break
        remaining -= begin - cursor
        cursor = end
    return cursor + remaining
