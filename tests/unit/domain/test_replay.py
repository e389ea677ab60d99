from datetime import UTC, datetime, timedelta

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import ServerObservation, epoch_ms
from pipeline.domain.replay import replay

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def seen(host, build, day):
    return ServerObservation.once(host, host, None, T0 + timedelta(days=day), build, "msgtrk-version")


def test_replay_orders_by_event_time_and_evaluates_at_the_newest_event():
    observations = [seen("b.example", "15.1.2507.39", 45), seen("a.example", "15.2.1748.39", 1),
                    seen("b.example", "15.1.2507.39", 0)]
    decisions = replay(observations, PolicyConfig(), load_catalog())
    assert [(d.hostname, d.stage, d.first_detected) for d in decisions] == [
        ("a.example", 0, None), ("b.example", 3, T0)]


def test_a_folded_observation_decides_like_its_sightings_one_by_one():
    days = [0, 3, 17, 31, 44]
    one_by_one = replay([seen("b.example", "15.1.2507.39", d) for d in days], PolicyConfig(), load_catalog())
    folded = ServerObservation("b.example", "b.example", None, "15.1.2507.39", "msgtrk-version",
                               T0, T0 + timedelta(days=44), count=5,
                               message_keys=[f"<{d}@b>" for d in days],
                               message_times_ms=[epoch_ms(T0 + timedelta(days=d)) for d in days],
                               message_sizes=[0] * 5)
    assert replay([folded], PolicyConfig(), load_catalog()) == one_by_one


def test_no_events_no_servers():
    assert replay([], PolicyConfig(), load_catalog()) == []
