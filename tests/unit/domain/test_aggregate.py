from datetime import UTC, datetime, timedelta

from pipeline.domain import aggregate
from pipeline.domain.aggregate import ObservationBatch
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, SourcePosition, TraceGroup, epoch_ms

AT = datetime(2026, 2, 10, 8, 14, 3, tzinfo=UTC)
CHAIN = ("from mail.fabrikam.example by mx1.example.net (Postfix) with ESMTPS id 4T; Wed, 11 Feb 2026 10:02:11 +0100",
         "from x by mail.fabrikam.example with Microsoft SMTP Server (TLS) id 15.0.1497.2; "
         "Wed, 11 Feb 2026 10:02:10 +0100")


def exim(n, host="mail.fabrikam.example", minutes=0):
    return MessageTrace(event_time=AT + timedelta(minutes=minutes), source_format="exim",
                        position=SourcePosition("e", n), event_id="ARRIVAL", message_id=f"<{n}@x>",
                        total_bytes=100 * n, client_hostname=host)


def test_sightings_of_a_server_fold_into_one_observation():
    batch = ObservationBatch(PolicyConfig())
    for n, minutes in ((1, 5), (2, 0), (3, 9)):
        batch.add_trace(exim(n, minutes=minutes))
    batch.add_trace(exim(4, host="other.example"))
    first, second = batch.observations()
    assert (first.server, first.count, first.first_seen, first.last_seen) == (
        "mail.fabrikam.example", 3, AT, AT + timedelta(minutes=9))
    assert (first.message_keys, first.message_sizes) == (["<1@x>", "<2@x>", "<3@x>"], [100, 200, 300])
    assert first.message_times_ms == [epoch_ms(AT + timedelta(minutes=m)) for m in (5, 0, 9)]
    assert (second.server, second.count) == ("other.example", 1)


def test_a_chain_names_each_server_and_a_group_counts_its_traces():
    batch = ObservationBatch(PolicyConfig.from_mapping({"trusted_receivers": ["mx*.example.net"]}))
    batch.add_trace(MessageTrace(event_time=AT, source_format="rfc5322", position=SourcePosition("m"), received=CHAIN,
                                 message_id="<c@x>"))
    template = MessageTrace(event_time=AT + timedelta(hours=1), source_format="msgtrk", position=SourcePosition("t"),
                            logged_by="ex13.contoso.example", logged_by_build="15.0.1497.2")
    batch.add_group(TraceGroup(template, epoch_ms(AT), 5, [epoch_ms(AT + timedelta(hours=1))], ["<g@x>"], [10]))
    by_server = {o.server: o for o in batch.observations()}
    fabrikam = by_server["mail.fabrikam.example"]
    assert (fabrikam.build, fabrikam.evidence) == ("15.0.1497.2", "received-id")
    group = by_server["ex13.contoso.example"]
    assert (group.count, group.first_seen, group.last_seen, group.message_keys) == (
        5, AT, AT + timedelta(hours=1), ["<g@x>"])


def test_busy_servers_are_split_into_records_that_still_add_up(monkeypatch):
    monkeypatch.setattr(aggregate, "MAX_MESSAGES_PER_OBSERVATION", 2)
    batch = ObservationBatch(PolicyConfig())
    for n, minutes in ((1, 3), (2, 1), (3, 2), (4, 0), (5, 4)):
        batch.add_trace(exim(n, minutes=minutes))
    records = batch.observations()
    assert [len(r.message_keys) for r in records] == [2, 2, 1]
    assert sum(r.count for r in records) == 5
    assert min(r.first_seen for r in records) == AT and max(r.last_seen for r in records) == AT + timedelta(minutes=4)


def test_until_leaves_later_traces_out_and_without_messages_only_counts_remain():
    batch = ObservationBatch(PolicyConfig(), until_ms=epoch_ms(AT + timedelta(minutes=5)), keep_messages=False)
    for n, minutes in ((1, 0), (2, 5), (3, 6)):
        batch.add_trace(exim(n, minutes=minutes))
    [observation] = batch.observations()
    assert (observation.count, observation.last_seen, observation.message_keys) == (2, AT + timedelta(minutes=5), [])
