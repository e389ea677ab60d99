"""The enforcement scope in the policy: servers seen only outside it are reported, never enforced."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import ServerState, assess, step

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
CATALOG = load_catalog()
CONFIG = PolicyConfig.from_mapping({"scope": {"connectors": ["Inbound from Contoso on-premises"]}})
SERVER = "ex13cas01.contoso.example"


def seen(at, in_scope, build="15.0.1497.2"):
    return replace(ServerObservation.once(SERVER, SERVER, None, at, build, "msgtrk-version"), in_scope=in_scope)


def run(observations):
    state, decisions = None, []
    for observation in observations:
        state, decision = step(state, observation, CONFIG, CATALOG)
        if decision:
            decisions.append(decision)
    return state, decisions


def test_a_vulnerable_server_seen_only_outside_the_scope_is_reported_at_stage_0():
    state, [decision] = run([seen(T0, False), seen(T0 + timedelta(days=100), False)])
    assert (decision.status, decision.stage, decision.first_detected) == ("unsupported", 0, None)
    assert decision.reason.endswith("; outside the enforcement scope, report only")
    assert decision.reason.startswith("Exchange2013 is out of support")
    assert assess(state, T0 + timedelta(days=400), CONFIG, CATALOG).stage == 0


def test_the_clock_starts_when_the_server_is_first_seen_in_scope():
    state, decisions = run([seen(T0, False), seen(T0 + timedelta(days=50), True)])
    assert [d.stage for d in decisions] == [0, 1]
    assert decisions[-1].first_detected == T0 + timedelta(days=50)
    assert assess(state, T0 + timedelta(days=80), CONFIG, CATALOG).stage == 2
    # Once in scope, later sightings on other paths keep it enforced.
    _, later = run([seen(T0, True), seen(T0 + timedelta(days=31), False)])
    assert [d.stage for d in later] == [1, 2]


def test_states_written_before_the_scope_existed_count_as_in_scope():
    state, _ = run([seen(T0, True)])
    stored = state.to_json()
    del stored["in_scope"]
    assert ServerState.from_json(stored).in_scope is True
