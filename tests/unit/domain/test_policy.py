from datetime import UTC, date, datetime, timedelta

import pytest

from pipeline.domain.config import Pause, PolicyConfig
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import ServerState, assess, step
from tests.unit.conftest import CATALOG, SERVER, T0, run, seen

CONFIG = PolicyConfig()


@pytest.mark.parametrize(
    "day, stage, throttle, block",
    [
        (0, 1, 0, 0), (29, 1, 0, 0), (30, 2, 5, 0), (39, 2, 5, 0), (40, 3, 10, 0), (49, 3, 10, 0),
        (50, 4, 20, 0), (59, 4, 20, 0), (60, 5, 30, 5), (69, 5, 30, 5), (70, 6, 30, 10), (79, 6, 30, 10),
        (80, 7, 30, 20), (89, 7, 30, 20), (90, 8, 0, 60), (400, 8, 0, 60),
    ],
)
def test_stage_at_every_boundary(day, stage, throttle, block):
    state, _ = run([seen("15.1.2507.39", T0)])
    decision = assess(state, T0 + timedelta(days=day), CONFIG, CATALOG)
    assert (decision.stage, decision.throttle_minutes_per_hour, decision.block_minutes_per_hour) == (
        stage, throttle, block)


def test_a_boundary_is_crossed_at_the_exact_moment_not_the_day_before():
    state, _ = run([seen("15.1.2507.39", T0)])
    assert assess(state, T0 + timedelta(days=30) - timedelta(milliseconds=1), CONFIG, CATALOG).stage == 1
    assert assess(state, T0 + timedelta(days=30), CONFIG, CATALOG).stage == 2


def test_the_decision_carries_the_schedule():
    state, [decision] = run([seen("15.1.2507.39", T0)])
    assert decision.status == "outdated"
    assert decision.first_detected == T0
    assert decision.throttle_enabled_date == date(2026, 2, 4)
    assert decision.blocking_enabled_date == date(2026, 3, 6)
    assert decision.next_stage_start_date == date(2026, 2, 4)
    assert (decision.next_stage_throttle_rate, decision.next_stage_block_rate) == (5, 0)
    assert decision.smtp_reply is None
    assert decision.recommended_builds[-1] == "15.1.2507.61"
    late = assess(state, T0 + timedelta(days=75), CONFIG, CATALOG)
    assert late.smtp_reply == "550 5.7.230 Connecting server version is out-of-date; connection blocked for 10 mins/hr."
    assert late.next_stage_start_date == date(2026, 3, 26)
    final = assess(state, T0 + timedelta(days=95), CONFIG, CATALOG)
    assert final.next_stage_start_date is None and final.next_stage_block_rate is None


def test_a_decision_is_emitted_only_when_it_changes_and_its_version_grows():
    days = [0, 1, 2, 29, 30, 31, 45, 46]
    _, decisions = run([seen("15.1.2507.39", T0 + timedelta(days=d)) for d in days])
    assert [(d.stage, d.version) for d in decisions] == [(1, 1), (2, 2), (3, 3)]
    assert decisions[1].decided_at == T0 + timedelta(days=30)


def test_remediation_returns_to_stage_0_and_a_relapse_starts_a_new_cycle():
    _, decisions = run([
        seen("15.1.2507.39", T0),
        seen("15.1.2507.39", T0 + timedelta(days=35)),
        seen("15.1.2507.61", T0 + timedelta(days=36)),
        # The old build is forgotten once it falls out of the 7-day build window.
        seen("15.1.2507.39", T0 + timedelta(days=50)),
    ])
    assert [(d.stage, d.status) for d in decisions] == [
        (1, "outdated"), (2, "outdated"), (0, "current"), (1, "outdated")]
    assert decisions[2].first_detected is None
    assert decisions[3].first_detected == T0 + timedelta(days=50)


def test_an_old_build_stamped_within_the_window_does_not_punish_a_patched_server():
    # Exchange's pickup folder stamped the admin display version (old CU) on patched servers.
    _, decisions = run([
        seen("15.1.2507.61", T0),
        seen("15.1.2507.6", T0 + timedelta(days=1)),
        seen("15.1.2507.6", T0 + timedelta(days=3)),
    ])
    assert [(d.stage, d.status) for d in decisions] == [(0, "current")]


def test_a_late_older_event_moves_first_detected_earlier():
    state, decisions = run([
        seen("15.1.2507.39", T0 + timedelta(days=40)),
        seen("15.1.2507.39", T0),
    ])
    assert state.first_detected_ms == int(T0.timestamp() * 1000)
    assert [d.stage for d in decisions] == [1, 3]
    assert decisions[-1].first_detected == T0


def test_traffic_without_a_build_keeps_the_last_known_build():
    _, decisions = run([seen("15.0.1497.2", T0), seen(None, T0 + timedelta(days=31))])
    assert [(d.stage, d.build) for d in decisions] == [(1, "15.0.1497.2"), (2, "15.0.1497.2")]


def test_unknown_server_is_not_enforced():
    _, [decision] = run([seen(None, T0)])
    assert (decision.status, decision.stage, decision.reason) == ("unknown", 0, "no build seen")


def test_exempt_servers_stay_at_stage_0_and_say_why():
    config = PolicyConfig.from_mapping({"exemptions": ["*.contoso.example"]})
    _, decisions = run([seen("15.0.1497.2", T0), seen("15.0.1497.2", T0 + timedelta(days=95))], config)
    assert [(d.stage, d.reason) for d in decisions] == [(0, "exempt: matches *.contoso.example")]


def test_products_outside_enforce_products_are_reported_only():
    config = PolicyConfig.from_mapping({"enforce_products": ["Exchange2013"]})
    _, decisions = run([seen("15.1.2507.39", T0), seen("15.1.2507.39", T0 + timedelta(days=95))], config)
    assert [d.stage for d in decisions] == [1]
    assert decisions[0].throttle_enabled_date is None
    assert "outside enforce_products" in decisions[0].reason


def test_state_survives_a_json_round_trip():
    state, _ = run([seen("15.1.2507.39", T0)])
    assert ServerState.from_json(state.to_json()) == state


def test_an_exchange_2010_server_without_a_build_is_unsupported_and_enforced():
    # Its tracking log's `#Version: 14.0.0.0` names the product, not the build.
    server = "ex10hub01.wingtip.example"

    def exchange_2010(at):
        return ServerObservation.once(server, server, None, at, None, "msgtrk-version", software="Exchange2010")

    state, decisions = run([exchange_2010(T0), exchange_2010(T0 + timedelta(days=31))])
    assert state.first_detected_ms == int(T0.timestamp() * 1000)
    assert [(d.product, d.build, d.status, d.stage) for d in decisions] == [
        ("Exchange2010", None, "unsupported", 1), ("Exchange2010", None, "unsupported", 2)]
    assert decisions[-1].reason == "Exchange2010 is out of support since 2020-10-13 (build unknown)"
    assert decisions[-1].smtp_reply.startswith("450 4.7.230")


def test_a_build_newer_than_the_catalog_knows_is_never_enforced():
    # A CU14 update released after the catalog was last updated: below 2019's baseline (CU15).
    later = T0 + timedelta(days=300)
    _, decisions = run([seen("15.2.1544.50", later), seen("15.2.1544.50", later + timedelta(days=95))])
    assert [(d.status, d.stage) for d in decisions] == [("current", 0)]
    assert decisions[0].reason == (
        "build 15.2.1544.50 is newer than every build the catalog knows of its line (newest 15.2.1544.48): "
        "the catalog does not know it yet; Exchange2019 is out of support since 2025-10-14; Extended Security "
        "Updates ended 2026-10-31")
    # A CU the catalog has not heard of at all, newer than every 2019 CU it knows.
    _, [new_cu] = run([seen("15.2.1800.3", later, server="ex19mbx02.contoso.example")])
    assert (new_cu.status, new_cu.reason.split(";")[0]) == ("current", (
        "build 15.2.1800.3 is newer than every build the catalog knows of Exchange2019 (newest 15.2.1748.53): "
        "the catalog does not know it yet"))


def test_exchange_2016_and_2019_reasons_say_they_are_out_of_support_and_the_baseline_still_decides():
    _, [outdated] = run([seen("15.1.2507.39", T0)])
    assert (outdated.status, outdated.stage) == ("outdated", 1)
    assert outdated.reason == ("build 15.1.2507.39 is below the Exchange2016 baseline 15.1.2507.61; "
                               "Exchange2016 is out of support since 2025-10-14; Extended Security Updates until "
                               "2026-10-31")
    _, [current] = run([seen("15.2.1748.39", T0, server="ex19mbx01.contoso.example")])
    assert (current.status, current.stage) == ("current", 0)
    assert current.reason == ("build 15.2.1748.39 is current; Exchange2019 is out of support since 2025-10-14; "
                              "Extended Security Updates until 2026-10-31")
    _, [supported] = run([seen("15.2.2562.46", T0, server="exse01.contoso.example")])
    assert supported.reason == "build 15.2.2562.46 is current"


def test_before_the_end_of_support_the_reason_does_not_claim_it():
    _, [decision] = run([seen("15.1.2507.39", datetime(2025, 6, 2, tzinfo=UTC))])
    assert decision.reason == "build 15.1.2507.39 is below the Exchange2016 baseline 15.1.2507.61"


def test_a_decision_says_support_ended_once_the_day_passes_with_nothing_else_changed():
    current = "15.1.2507.61"
    before = datetime(2025, 10, 1, tzinfo=UTC)
    _, decisions = run([seen(current, before), seen(current, before + timedelta(days=5)),
                        seen(current, datetime(2025, 10, 20, tzinfo=UTC))])
    assert [d.reason for d in decisions] == [
        "build 15.1.2507.61 is current", "build 15.1.2507.61 is current; Exchange2016 is out of support since "
                                         "2025-10-14; Extended Security Updates until 2026-10-31"]


def test_a_decision_says_the_extended_security_updates_ended_once_their_day_passes():
    outdated = "15.2.1748.24"
    before = datetime(2026, 10, 20, tzinfo=UTC)
    _, decisions = run([seen(outdated, before), seen(outdated, datetime(2026, 11, 2, tzinfo=UTC))])
    assert [d.reason.split("; ", 2)[-1] for d in decisions] == [
        "Extended Security Updates until 2026-10-31", "Extended Security Updates ended 2026-10-31"]


def test_an_exchange_product_known_without_a_build_gives_way_to_a_build():
    ex2010 = ServerObservation.once(SERVER, SERVER, None, T0, None, "msgtrk-version", software="Exchange2010")
    state, [first] = run([ex2010])
    assert (first.product, first.build, first.status) == ("Exchange2010", None, "unsupported")
    state, decision = step(state, seen("15.1.2507.61", T0 + timedelta(days=1)), CONFIG, CATALOG)
    assert (decision.product, decision.status) == ("Exchange2016", "current")


def test_a_pause_starting_and_ending_between_two_sightings_is_decided_through_step():
    # Each sighting is folded by `step`, as the stream does: the pause's first and last day must
    # each make the next sighting decide again, or the stage of before the pause would stand.
    paused = PolicyConfig(pauses=(Pause("contoso.example", date(2026, 2, 10), 10),))
    days = (0, 34, 38, 48)
    _, decisions = run([seen("15.0.1497.2", T0 + timedelta(days=day), org="contoso.example") for day in days],
                       paused)
    assert [(d.decided_at.date().isoformat(), d.stage, d.throttle_minutes_per_hour) for d in decisions] == [
        ("2026-01-05", 1, 0), ("2026-02-08", 2, 5), ("2026-02-12", 1, 0), ("2026-02-22", 2, 5)]
    assert decisions[2].reason.endswith("; enforcement paused until 2026-02-20")
