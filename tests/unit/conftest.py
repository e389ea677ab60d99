"""Shared fixtures and helpers of the unit tests: decisions as the enforce agent emits them, and the
policy stepped over observations as the stream steps it."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import ServerObservation, server_id_of
from pipeline.domain.policy import Decision, ServerState, step
from tests.conftest import decision

# The policy tests' clock starts here; their servers are seen against the bundled catalog.
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CATALOG = load_catalog()
SERVER = "ex16mbx01.contoso.example"


@pytest.fixture
def make_decision():
    """make_decision(version, stage): the decision on ex13mbx01.contoso.example (no org); stage 2
    throttles 5 minutes an hour, and each version is decided a day after the one before."""
    def make(version: int, stage: int) -> Decision:
        return decision(stage=stage, version=version, throttle_minutes_per_hour=5 if stage == 2 else 0,
                        next_stage_start_date=date(2026, 2, 1 if stage == 1 else 11),
                        decided_at=datetime(2026, 1, 2 + version, tzinfo=UTC))
    return make


def seen(build: str | None, at: datetime, server: str = SERVER, org: str | None = None,
         in_scope: bool = True) -> ServerObservation:
    """One sighting of `server` (of `org`) at `at` in a tracking log: with its build from the
    version field, or (no build) its traffic alone."""
    observation = ServerObservation.once(server_id_of(server, org), server, org, at, build,
                                         "msgtrk-version" if build else "msgtrk-traffic")
    return observation if in_scope else replace(observation, in_scope=False)


def run(observations, config: PolicyConfig | None = None) -> tuple[ServerState | None, list[Decision]]:
    """`step` over the observations one by one, as the stream takes them: the last state and every
    decision published on the way."""
    config = PolicyConfig() if config is None else config
    state, decisions = None, []
    for observation in observations:
        state, published = step(state, observation, config, CATALOG)
        if published:
            decisions.append(published)
    return state, decisions


@pytest.fixture
def kafka_answers(monkeypatch):
    """The commands' preflight (`kafka_clients.check_connection`) passes: for a test whose Kafka
    clients are stand-ins, so that no broker is looked for."""
    from pipeline import kafka_clients

    monkeypatch.setattr(kafka_clients, "check_connection", lambda settings, **limits: None)
