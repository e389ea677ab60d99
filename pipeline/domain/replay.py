"""Replay trace events in event-time order through the same rules the stream applies."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from pipeline.domain import identity, policy
from pipeline.domain.catalog import Catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace


def replay(
    traces: Iterable[MessageTrace], config: PolicyConfig, catalog: Catalog, at: datetime | None = None
) -> list[policy.Decision]:
    """Per-server decisions as of `at` (default: the newest event time), sorted by server."""
    states: dict[str, policy.ServerState] = {}
    newest: datetime | None = None
    for trace in sorted(traces, key=lambda t: t.event_time):
        if at is not None and trace.event_time > at:
            break
        for observation in identity.observations(trace, config):
            states[observation.server_id], _ = policy.step(states.get(observation.server_id), observation, config, catalog)
            newest = max(newest or observation.event_time, observation.event_time)
    if newest is None:
        return []
    as_of = at or newest
    decisions = [policy.assess(state, as_of, config, catalog) for state in states.values()]
    return sorted(decisions, key=lambda d: (d.hostname, d.org or ""))
