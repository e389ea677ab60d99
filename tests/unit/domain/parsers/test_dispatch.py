import copy
from datetime import UTC, datetime

import orjson
import pytest

from pipeline.domain.parsers import dispatch
from pipeline.domain.parsers.dispatch import SourceState


def test_detection_by_first_meaningful_line():
    assert dispatch.detect("\ufeff#Software: Microsoft Exchange Server\r\n") == "msgtrk"
    assert dispatch.detect('"date_time_utc","client_ip","client_hostname"') == "exo_trace"
    assert dispatch.detect("#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace") == "exo_trace"
    assert dispatch.detect("From MAILER-DAEMON Tue Feb 10 08:14:09 2026") == "rfc5322"
    assert dispatch.detect("Received: from a by b; Tue, 10 Feb 2026 08:14:09 +0000") == "rfc5322"
    assert dispatch.detect("Feb 16 11:20:32 mx1 postfix/smtpd[2012]: connect from a[1.2.3.4]") == "postfix"
    assert dispatch.detect("2026-02-20 08:14:01 1vDm9G-0000000F3wb-1R0u <= a@b H=x [1.2.3.4]") == "exim"
    assert dispatch.detect("   ") is None
    assert dispatch.detect("hello world") is None


def test_unknown_first_line_is_an_error_and_the_format_is_kept_per_source(make_source):
    source = make_source().feed(["hello world"])
    [error] = source.out.errors
    assert error.reason == "unknown format: not a line of any supported log"
    source.feed(["#Software: Microsoft Exchange Server"])
    assert source.state.format == "msgtrk"


def test_short_host_names_of_line_formats_join_the_fqdn_seen_earlier_in_the_source(make_source):
    lines = [
        "2026-02-20 08:14:01 1vDm9G-0000000F3wb-1R0u <= a@b H=mail.fabrikam.example [192.0.2.1] S=10 id=x1",
        "2026-02-20 08:14:02 1vDm9G-0000000F3wc-1R0u <= a@b H=mail [192.0.2.1] S=10 id=x2",
    ]
    traces = make_source().feed(lines).out.traces
    assert [t.client_hostname for t in traces] == ["mail.fabrikam.example", "mail.fabrikam.example"]


def test_event_times_are_cut_to_milliseconds(make_source):
    line = "2026-02-20 08:14:01.123 +0100 1vDm9G-0000000F3wb-1R0u <= a@b H=a.example [192.0.2.1] S=10"
    [trace] = make_source().feed([line]).out.traces
    assert trace.event_time.microsecond == 123000
    line = "2026-02-16T12:02:44.318211+00:00 mx1 postfix/smtpd[1]: ABCDEF1: client=a.example[192.0.2.1]"
    [trace] = make_source().feed([line]).finish().out.traces
    assert trace.event_time.microsecond == 318000


def test_a_tracking_log_after_another_format_in_the_same_source_switches_the_parser(make_source):
    source = make_source().feed([
        "2026-02-20 08:14:01 1vDm9G-0000000F3wb-1R0u <= a@b H=mail.fabrikam.example [192.0.2.1] S=10 id=x1",
        "#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039",
        "#Fields: date-time,client-hostname,server-hostname,event-id",
        "2026-02-10T08:14:04.000Z,app1.contoso.example,EX16MBX01.contoso.example,RECEIVE",
    ])
    assert source.state.format == "msgtrk"
    assert [t.client_hostname for t in source.out.traces] == ["mail.fabrikam.example"]
    assert [g.template.logged_by for g in source.out.groups] == ["ex16mbx01.contoso.example"]


def test_reading_the_same_file_twice_gives_the_same_events(make_source):
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Fields: date-time,client-hostname,server-hostname,event-id,message-id",
        "2026-01-20T07:12:45.301Z,EX13MBX02,EX13MBX02,RECEIVE,<a@x>",
        "2026-01-20T07:12:46.055Z,EX13MBX02.tailspin.example,mx.partner.example,SEND,<a@x>",
    ]
    source = make_source()
    passes = []
    for _ in range(2):
        source.out.groups.clear()
        source.feed(lines)
        passes.append(sorted(g.template.logged_by for g in source.out.groups))
    # The short-named row waits for the FQDN the file shows later: one server, once per pass.
    assert passes[0] == passes[1] == ["ex13mbx02.tailspin.example"]


def test_a_trace_naming_a_server_both_ways_names_it_once_by_its_fqdn(make_source):
    # The short name comes first in the trace, the FQDN later: learnt before resolving all the same.
    line = ('"2026-02-10T08:14:03.000Z","EX01","198.51.100.31","EX01.CORP.TEST","RECEIVE"')
    source = make_source().feed(['"date_time_utc","server_hostname","client_ip","client_hostname","event_id"', line])
    [trace] = source.out.traces
    assert (trace.client_hostname, trace.server_hostname) == ("ex01.corp.test", "ex01.corp.test")


def test_host_names_no_dns_could_hold_are_errors_not_servers(make_source):
    lines = [
        "Mar  7 02:09:33 mx1 postfix/smtpd[4711]: 4T9xYz1: client=mail\x00evil.example[192.0.2.7]",
        "Mar  7 02:09:33 mx1 postfix/cleanup[4712]: 4T9xYz1: message-id=<a@b>",
        "Mar  7 02:09:34 mx1 postfix/qmgr[1001]: 4T9xYz1: from=<a@b>, size=100, nrcpt=1 (queue active)",
    ]
    source = make_source(reference=datetime(2026, 3, 8, tzinfo=UTC)).feed(lines)
    [error] = source.out.errors
    assert str(error) == "sample:1: field client-hostname: host name 'mail\\x00evil.example' holds control characters"
    [trace] = source.out.traces
    assert (trace.client_hostname, trace.client_ip) == (None, "192.0.2.7")


def test_received_headers_with_control_characters_leave_the_chain(make_source):
    lines = ["Received: from a by ex16\x01edge.contoso.example with Microsoft SMTP Server id 15.1.2507.39; "
             "Tue, 10 Feb 2026 08:14:06 +0000",
             "Received: from b by ex16mbx01.contoso.example with mapi id 15.1.2507.39; Tue, 10 Feb 2026 08:14:05 +0000",
             "Message-ID: <m@contoso.example>", ""]
    source = make_source().feed(lines)
    [error] = source.out.errors
    assert error.field == "Received" and "control characters" in error.reason
    [trace] = source.out.traces
    assert [h.split(" by ")[1].split()[0] for h in trace.received] == ["ex16mbx01.contoso.example"]


# Source states as the version before typed parser states stored them (the stream's offset aside),
# each after the first lines of a sample: (sample, lines read, state). Tracking logs: test_ingest.
STORED_BEFORE = [
    ("exo/get-messagetrace.en-gb.csv", 3,
     b'{"format":"exo_trace","parser":{"columns":["pscomputername","runspaceid","psshowcomputername","organization",'
     b'"messageid","received","senderaddress","recipientaddress","subject","status","toip","fromip","size",'
     b'"messagetraceid","startdate","enddate","index"],"dates":{"order":"day-first","line":3,'
     b'"stamp":"13/02/2026 16:41:09"}},"hosts":{}}'),
    ("headers/inbound.mbox", 3,
     b'{"format":"rfc5322","parser":{"mbox":true,"phase":"headers","fields":[["Received: from '
     b'DM6PR12MB4123.namprd12.prod.outlook.com (2603:10b6:5:1c0::15) by"," DM6PR12MB4124.namprd12.prod.outlook.com '
     b'with HTTPS; Tue, 10 Feb 2026 08:14:09"]],"start":1,"chars":157,"place":[1,null,null]},"hosts":{}}'),
    ("postfix/mail.log", 4,
     b'{"format":"postfix","parser":{"open":1,"oldest_ms":1771240832000,"newest_ms":1771240833000},"hosts":{}}'),
    ("exim/mainlog", 2, b'{"format":"exim","parser":{},"hosts":{"mail":"mail.fabrikam.example"}}'),
]


@pytest.mark.parametrize(("sample", "read", "stored"), STORED_BEFORE, ids=[s.split("/")[0] for s, *_ in STORED_BEFORE])
def test_a_state_stored_before_parser_states_were_typed_is_written_and_read_as_it_was(samples, make_source, sample,
                                                                                    read, stored):
    reference = datetime(2026, 2, 17, tzinfo=UTC)
    lines = (samples / sample).read_text(encoding="utf-8").splitlines()
    live = make_source(sample, reference).feed(lines[:read])
    assert orjson.dumps(live.state.to_json()) == stored
    restored = make_source(sample, reference)
    restored.state = SourceState.from_json(orjson.loads(stored))
    restored.open_messages, restored.lines = copy.deepcopy(live.open_messages), read
    assert restored.state == live.state
    for source in (live, restored):
        source.out.traces.clear()
        source.out.errors.clear()
        source.feed(lines[read:]).finish()
    assert live.out.traces and (restored.out.traces, restored.out.errors) == (live.out.traces, live.out.errors)


def test_a_state_of_a_format_no_parser_reads_is_refused_by_name():
    with pytest.raises(ValueError, match="a parser state of format 'sendmail', which no parser reads"):
        SourceState.from_json({"format": "sendmail", "parser": {}, "hosts": {}})
