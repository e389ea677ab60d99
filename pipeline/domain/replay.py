"""Replay observations in event-time order through the same rules the stream applies."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pipeline.domain import policy
from pipeline.domain.catalog import Catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import ServerObservation


def replay(
    observations: Iterable[ServerObservation], config: PolicyConfig, catalog: Catalog, at: datetime | None = None
) -> list[policy.Decision]:
    """Per-server decisions as of `at` (default: the newest event time), sorted by server.

    The observations must already leave out what happened after `at` (ObservationBatch's until_ms).
    """
    states: dict[str, policy.ServerState] = {}
    newest: datetime | None = None
    for observation in sorted(observations, key=lambda o: (o.first_seen, o.last_seen)):
        states[observation.server_id] = policy.observe(states.get(observation.server_id), observation, config, catalog)
        newest = max(newest or observation.last_seen, observation.last_seen)
    if newest is None:
        return []
    as_of = at or newest
    decisions = [policy.assess(state, as_of, config, catalog) for state in states.values()]
    return sorted(decisions, key=lambda d: (d.hostname, d.org or ""))
