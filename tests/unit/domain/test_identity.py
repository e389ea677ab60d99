from datetime import datetime, timezone

from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.config import PolicyConfig
from pipeline.domain.identity import observations as observations_with


def observations(trace):
    return observations_with(trace, PolicyConfig())

AT = datetime(2026, 2, 10, 8, 14, 3, tzinfo=timezone.utc)


def trace(**fields):
    return MessageTrace(event_time=AT, source_format="msgtrk", position=SourcePosition("f", 1), **fields)


def test_the_log_writer_is_observed_with_its_build():
    [seen] = observations(trace(logged_by="EX16MBX01.Contoso.Example", logged_by_build="15.1.2507.39",
                                message_id="<a@b>", total_bytes=100, org="contoso.example"))
    assert (seen.server_id, seen.server, seen.org, seen.build, seen.evidence) == (
        "contoso.example/ex16mbx01.contoso.example", "ex16mbx01.contoso.example", "contoso.example",
        "15.1.2507.39", "msgtrk-version")
    assert (seen.event_time, seen.message_id, seen.total_bytes) == (AT, "<a@b>", 100)


def test_traffic_without_a_build_still_counts():
    [seen] = observations(trace(logged_by="ex10hub01.contoso.example"))
    assert (seen.build, seen.evidence) == (None, "msgtrk-traffic")


def test_exchange_online_servers_are_never_observed():
    assert observations(trace(logged_by="dm6pr12mb4123.namprd12.prod.outlook.com", logged_by_build="15.20.7202.31")) == []
    assert observations(trace()) == []
