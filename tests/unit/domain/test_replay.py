from datetime import datetime, timedelta, timezone

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.replay import replay

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def trace(host, build, day):
    return MessageTrace(event_time=T0 + timedelta(days=day), source_format="msgtrk", position=SourcePosition("f"),
                        logged_by=host, logged_by_build=build)


def test_replay_orders_by_event_time_and_evaluates_at_the_newest_event():
    traces = [trace("b.example", "15.1.2507.39", 45), trace("a.example", "15.2.1748.39", 1), trace("b.example", "15.1.2507.39", 0)]
    decisions = replay(traces, PolicyConfig(), load_catalog())
    assert [(d.hostname, d.stage, d.first_detected) for d in decisions] == [
        ("a.example", 0, None), ("b.example", 3, T0)]


def test_at_evaluates_the_past_with_only_the_events_known_then():
    traces = [trace("b.example", "15.1.2507.39", 0), trace("b.example", "15.1.2507.61", 20)]
    [decision] = replay(traces, PolicyConfig(), load_catalog(), at=T0 + timedelta(days=10))
    assert (decision.status, decision.stage) == ("outdated", 1)
    [decision] = replay(traces, PolicyConfig(), load_catalog(), at=T0 + timedelta(days=31))
    assert (decision.status, decision.stage) == ("current", 0)


def test_no_events_no_servers():
    assert replay([], PolicyConfig(), load_catalog()) == []
