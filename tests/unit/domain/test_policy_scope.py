"""The enforcement scope in the policy: servers seen only outside it are reported, never enforced."""
from datetime import timedelta

from pipeline.domain.config import PolicyConfig
from pipeline.domain.policy import ServerState, assess
from tests.unit.conftest import CATALOG, T0, run, seen

CONFIG = PolicyConfig.from_mapping({"scope": {"connectors": ["Inbound from Contoso on-premises"]}})
SERVER = "ex13cas01.contoso.example"


def sighting(at, in_scope):
    return seen("15.0.1497.2", at, SERVER, in_scope=in_scope)


def test_a_vulnerable_server_seen_only_outside_the_scope_is_reported_at_stage_0():
    state, [decision] = run([sighting(T0, False), sighting(T0 + timedelta(days=100), False)], CONFIG)
    assert (decision.status, decision.stage, decision.first_detected) == ("unsupported", 0, None)
    assert decision.reason.endswith("; outside the enforcement scope, report only")
    assert decision.reason.startswith("Exchange2013 is out of support")
    assert assess(state, T0 + timedelta(days=400), CONFIG, CATALOG).stage == 0


def test_the_clock_starts_when_the_server_is_first_seen_in_scope():
    state, decisions = run([sighting(T0, False), sighting(T0 + timedelta(days=50), True)], CONFIG)
    assert [d.stage for d in decisions] == [0, 1]
    assert decisions[-1].first_detected == T0 + timedelta(days=50)
    assert assess(state, T0 + timedelta(days=80), CONFIG, CATALOG).stage == 2
    # Once in scope, later sightings on other paths keep it enforced.
    _, later = run([sighting(T0, True), sighting(T0 + timedelta(days=31), False)], CONFIG)
    assert [d.stage for d in later] == [1, 2]


def test_states_written_before_the_scope_existed_count_as_in_scope():
    state, _ = run([sighting(T0, True)], CONFIG)
    stored = state.to_json()
    del stored["in_scope"]
    assert ServerState.from_json(stored).in_scope is True
