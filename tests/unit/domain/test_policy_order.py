"""The policy's result does not depend on the order observations are folded in.

The stream folds them as Kafka partitions deliver them, batch by batch; `evaluate` in event-time
order. Any permutation of the same observations must leave the same state and the same decision
(only the version, which counts the decisions published on the way, may differ).
"""
import json
import random
from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import ServerState, decide, observe, step
from tests.unit.conftest import CATALOG, T0

CONFIG = PolicyConfig()
SCOPED = PolicyConfig.from_mapping({"scope": {"connectors": ["Inbound from on-premises"]}})
SERVER = "mail.contoso.example"
OUTDATED, CURRENT, UNSUPPORTED = "15.1.2507.39", "15.1.2507.61", "15.0.1497.2"


def seen(days, build=None, software=None, relay=None, in_scope=True, until_days=None):
    """Sightings from `days` (to `until_days`) after T0."""
    first = T0 + timedelta(days=days)
    last = T0 + timedelta(days=until_days) if until_days is not None else first
    return ServerObservation(SERVER, SERVER, None, build, "received-id", first, last, count=2,
                             behind_relay=relay, software=software, in_scope=in_scope)


def ms(days):
    return int((T0 + timedelta(days=days)).timestamp() * 1000)


def fold(observations, config=CONFIG, cuts=()):
    """Observations through `observe`, deciding after each (cuts empty) or at each cut, as the
    stream decides once per batch. Returns the state and the last decision published."""
    state, published = None, None
    for i, observation in enumerate(observations, 1):
        state = observe(state, observation, config, CATALOG)
        if not cuts or i in cuts or i == len(observations):
            state, decision = decide(state, config, CATALOG)
            published = decision or published
    return state, published


def settled(state, decision):
    """What must not depend on the order: the state and decision without the count of decisions
    published on the way, and without when the decision was published."""
    return replace(state, version=0), replace(decision, version=0, decided_at=None)


SCENARIOS = {
    "contradictory software and builds": [
        seen(0, "4.96", "Exim"), seen(1, OUTDATED), seen(1, "4.97", "Exim"), seen(1, None, "Sendmail"),
        seen(2, "8.17.1.9", "Sendmail"), seen(2, "4.96", "Exim"), seen(3, OUTDATED, "Exchange2016"),
        seen(3, None, "Exchange2010"), seen(40, "4.96", "Exim"), seen(40, "1.2.x", None),
    ],
    "remediation, then late vulnerable sightings": [
        seen(0, OUTDATED), seen(20, OUTDATED), seen(35, OUTDATED), seen(36, CURRENT), seen(38, OUTDATED),
        seen(5, OUTDATED, until_days=30), seen(50, OUTDATED), seen(60), seen(61, OUTDATED),
    ],
    "a late current sighting inside a vulnerable run": [
        *(seen(day, OUTDATED) for day in range(0, 40, 2)), seen(9, CURRENT), seen(45),
    ],
    "equal event times": [
        seen(0, OUTDATED), seen(0, CURRENT), seen(0, "15.1.2507.6"), seen(3, "15.1.2507.6", "Exim"),
        seen(3, "15.1.2507.6", "Postfix"), seen(3, None, relay="relay-a.contoso.example"),
        seen(3, None, relay="relay-b.contoso.example"), seen(30, UNSUPPORTED), seen(30, "4.96"),
        seen(40, UNSUPPORTED), seen(40, CURRENT),
    ],
    "relays and direct sightings": [
        seen(0, UNSUPPORTED, relay="relay-a.contoso.example"), seen(5, UNSUPPORTED, relay="relay-b.contoso.example"),
        seen(2, None, relay="relay-c.contoso.example"), seen(31, UNSUPPORTED, relay="relay-a.contoso.example"),
    ],
}

SCOPED_SCENARIOS = {
    "in scope only later, through traffic": [
        seen(0, UNSUPPORTED, in_scope=False), seen(10, in_scope=True), seen(20, UNSUPPORTED, in_scope=False),
        seen(15, CURRENT, in_scope=False), seen(25, OUTDATED, in_scope=False), seen(50, in_scope=True),
    ],
}


@pytest.mark.parametrize("name, config", [*((n, CONFIG) for n in SCENARIOS), *((n, SCOPED) for n in SCOPED_SCENARIOS)])
def test_any_order_and_any_batching_settle_on_the_same_state_and_decision(name, config):
    observations = {**SCENARIOS, **SCOPED_SCENARIOS}[name]
    in_event_time = sorted(observations, key=lambda o: (o.first_seen, o.last_seen))
    expected = settled(*fold(in_event_time, config))
    shuffler = random.Random(f"policy order: {name}")
    for _ in range(200):
        order = shuffler.sample(observations, len(observations))
        cuts = set(shuffler.sample(range(1, len(order) + 1), shuffler.randint(0, 3)))
        assert settled(*fold(order, config, cuts)) == expected, [(o.first_seen, o.build, o.software) for o in order]


def test_the_newest_software_name_wins_not_the_one_folded_last():
    exim, sendmail = seen(1, "4.96", "Exim"), seen(0, "8.17.1.9", "Sendmail")
    for order in ([exim, sendmail], [sendmail, exim]):
        state, decision = fold(order)
        assert (state.software, decision.product) == ("Exim", "Exim")
        assert state.software_ms == ms(1)


def test_software_named_at_the_same_moment_is_chosen_by_name():
    exim, postfix = seen(0, "4.96", "Exim"), seen(0, "3.7", "Postfix")
    for order in ([exim, postfix], [postfix, exim]):
        assert fold(order)[0].software == "Postfix"


def test_the_newest_relay_wins_not_the_one_folded_last():
    newer = seen(2, UNSUPPORTED, relay="relay-b.contoso.example")
    older = seen(1, UNSUPPORTED, relay="relay-a.contoso.example")
    for order in ([newer, older], [older, newer]):
        state, decision = fold(order)
        assert state.relay == "relay-b.contoso.example"
        assert decision.reason.endswith("behind relay relay-b.contoso.example, report only")


def test_of_builds_stamped_at_the_same_moment_the_higher_stays_as_the_last_known_build():
    for order in ([seen(0, OUTDATED), seen(0, CURRENT), seen(10)], [seen(0, CURRENT), seen(0, OUTDATED), seen(10)]):
        state, decision = fold(order)
        assert state.builds == {CURRENT: ms(0)}
        assert (decision.build, decision.status) == (CURRENT, "current")


def test_a_late_older_vulnerable_sighting_does_not_move_the_clock_back_across_a_remediation():
    # Patched on day 10, vulnerable again on day 30: the sighting of the old build on day 5,
    # arriving last, belongs to the cycle the patch ended.
    arrived = [seen(0, OUTDATED), seen(10, CURRENT), seen(30, OUTDATED), seen(5, OUTDATED)]
    state, decision = fold(arrived)
    assert decision.first_detected == T0 + timedelta(days=30)
    assert state.first_detected_ms == ms(30)
    assert settled(state, decision) == settled(*fold(sorted(arrived, key=lambda o: o.first_seen)))
    # Within the patch's build window, the old build does not count at all.
    state, decision = fold([seen(0, OUTDATED), seen(10, CURRENT), seen(5, OUTDATED)])
    assert (state.first_detected_ms, decision.status, decision.stage) == (None, "current", 0)


def test_a_late_older_vulnerable_sighting_after_the_remediation_dates_the_relapse():
    # Relapsed after the build window of the patch: the late day-20 sighting starts the new cycle.
    state, decision = fold([seen(0, OUTDATED), seen(10, CURRENT), seen(30, OUTDATED), seen(20, OUTDATED)])
    assert state.first_detected_ms == ms(20)
    assert decision.first_detected == T0 + timedelta(days=20)


def test_old_builds_within_the_window_of_a_patch_start_the_clock_as_the_patch_leaves_it():
    # Vulnerable every other day, patched on day 9 (seen once, arriving last): the old build
    # counts again once the patched one is out of the 7-day window, just after day 16.
    run = [seen(day, OUTDATED) for day in range(0, 30, 2)]
    state, decision = fold([*run, seen(9, CURRENT)])
    assert state.first_detected_ms == ms(16) + 1
    assert (decision.status, decision.stage) == ("outdated", 1)
    assert fold([seen(9, CURRENT), *run])[0].first_detected_ms == ms(16) + 1


def test_the_clock_of_a_server_seen_vulnerable_outside_the_scope_starts_when_it_is_seen_in_scope():
    state, decision = fold([seen(20, in_scope=True), seen(0, UNSUPPORTED, in_scope=False)], SCOPED)
    assert state.first_detected_ms == ms(20)
    assert (decision.stage, decision.first_detected) == (1, T0 + timedelta(days=20))


def test_a_vulnerable_product_named_only_beside_a_build_of_another_is_reported_not_timed():
    # The newest name, Exchange 2016 (no build: unknown by itself), makes the old build Exchange
    # 2016's; but the only sighting of that build named Exim: none was vulnerable by itself.
    state, decision = fold([seen(0, OUTDATED, "Exim"), seen(1, None, "Exchange2016")])
    assert state.first_detected_ms is None
    assert (decision.status, decision.stage) == ("outdated", 0)
    assert decision.reason.endswith("no vulnerable sighting of its own since its last current one starts the clock, "
                                    "report only")


def test_state_survives_a_json_round_trip_through_text():
    state, _ = fold(SCENARIOS["remediation, then late vulnerable sightings"])
    assert state.vulnerable_spans and state.healthy_ms is not None
    assert ServerState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_a_state_written_before_the_spans_were_kept_keeps_its_clock():
    state, _ = fold([seen(0, OUTDATED), seen(40, OUTDATED)])
    stored = state.to_json()
    for name in ("software_ms", "relay_ms", "in_scope_since_ms", "healthy_ms", "vulnerable_spans"):
        del stored[name]
    old = ServerState.from_json(stored)
    later, decision = step(old, seen(45), CONFIG, CATALOG)
    assert later.first_detected_ms == ms(0)
    assert decision is None or decision.first_detected == T0
