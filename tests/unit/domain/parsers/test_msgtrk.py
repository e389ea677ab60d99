from datetime import datetime, timezone

from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.parsers.msgtrk import initial_state, parse_line, writer_build

F30 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
    "event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,"
    "total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,"
    "return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,"
    "transport-traffic-type,log-id,schema-version"
)
F26 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
    "event-id,internal-message-id,message-id,recipient-address,recipient-status,total-bytes,"
    "recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,"
    "message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data"
)
RECEIVE_2016 = (
    '2026-02-10T08:14:03.127Z,fe80::1c2a:7e4f:3b1d:9a10%3,app1.contoso.example,198.51.100.16,'
    'EX16MBX01.contoso.example,08DC3F1A2B3C4D5E;2026-02-10T08:14:02.981Z;0,EX16MBX01\\Default Frontend EX16MBX01,'
    'SMTP,RECEIVE,41231,<a1@contoso.example>,6f1c2a8e-0d5b-4c1e-9a77-2b1f3c4d5e6f,'
    'jo@partner.example;al@partner.example,,15230,2,,,"Re: ""Budget"", final version",'
    'billing@contoso.example,billing@contoso.example,2026-02-10T08:14:01.000Z;SRV=EX16MBX01.contoso.example:TOTAL=0,'
    'Originating,,,,S:FirstForestHop=EX16MBX01.contoso.example;S:DeliveryPriority=Normal,Email,'
    '3c9d2e7f-1111-2222-3333-444455556666,15.01.2507.039'
)
SEND_2010 = (
    "2026-03-15T10:00:05.500Z,198.51.100.10,EX10HUB01.contoso.example,203.0.113.45,mx.partner.example,"
    "08DC3F1A2B3C4D60;250 2.6.0 <b2@contoso.example> Queued mail for delivery,Internet,SMTP,SEND,77,"
    "<b2@contoso.example>,jo@partner.example,250 2.6.0 Queued,2048,1,,,Lunch?,ann@contoso.example,"
    "ann@contoso.example,,Originating,,,,"
)


def header_for(version, fields):
    header = initial_state()
    for line in ("\ufeff#Software: Microsoft Exchange Server\r\n", f"#Version: {version}\r\n",
                 "#Log-type: Message Tracking Log\r\n", "#Date: 2026-02-10T00:00:00.000Z\r\n", f"#Fields: {fields}\r\n"):
        header, results = parse_line(header, line, SourcePosition("f.log", 1))
        assert results == []
    return header


def test_a_2016_receive_row_names_its_writer_and_build():
    header = header_for("15.01.2507.039", F30)
    _, [trace] = parse_line(header, RECEIVE_2016 + "\r\n", SourcePosition("MSGTRK2026021001-1.LOG", 7, 2210))
    assert trace.event_time == datetime(2026, 2, 10, 8, 14, 3, 127000, tzinfo=timezone.utc)
    assert trace.event_id == "RECEIVE"
    assert trace.logged_by == "ex16mbx01.contoso.example"
    assert trace.logged_by_build == "15.1.2507.39"
    assert trace.client_ip == "fe80::1c2a:7e4f:3b1d:9a10%3"
    assert trace.recipients == ("jo@partner.example", "al@partner.example")
    assert trace.total_bytes == 15230
    assert trace.position == SourcePosition("MSGTRK2026021001-1.LOG", 7, 2210)


def test_a_2010_send_row_is_written_by_the_client_host_and_carries_no_build():
    header = header_for("14.0.0.0", F26)
    _, [trace] = parse_line(header, SEND_2010, SourcePosition("x", 9))
    assert trace.logged_by == "ex10hub01.contoso.example"
    assert trace.logged_by_build is None


def test_a_new_header_block_replaces_the_old_columns():
    state = header_for("14.0.0.0", F26)
    for line in ("#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039", f"#Fields: {F30}"):
        state, _ = parse_line(state, line, SourcePosition("x", 1))
    assert state == {"version": "15.01.2507.039", "fields": F30.split(",")}
    _, [trace] = parse_line(state, RECEIVE_2016, SourcePosition("x", 2))
    assert trace.logged_by_build == "15.1.2507.39"
    state, _ = parse_line(state, "#Software: Microsoft Exchange Server", SourcePosition("x", 3))
    assert state == initial_state()


def test_errors_say_where_and_why():
    _, [error] = parse_line(initial_state(), RECEIVE_2016, SourcePosition("a.log", 3))
    assert isinstance(error, ParseError)
    assert str(error) == "a.log:3: data line before any #Fields: header line"
    header = header_for("15.01.2507.039", F30)
    _, [error] = parse_line(header, "2026-02-10T08:14:03Z,1.2.3.4", SourcePosition("a.log", 4))
    assert error.reason == "2 values for the 30 columns of #Fields"
    _, [error] = parse_line(header, "yesterday" + RECEIVE_2016[24:], SourcePosition("a.log", 5))
    assert (error.field, str(error)) == ("date-time", "a.log:5: field date-time: 'yesterday' is not an ISO-8601 time")
    _, [error] = parse_line(header, RECEIVE_2016.replace(",15230,", ",15k,"), SourcePosition("a.log", 6))
    assert error.field == "total-bytes"


def test_blank_lines_are_skipped():
    assert parse_line(initial_state(), "\r\n", SourcePosition("a", 1)) == (initial_state(), [])


def test_constant_versions_are_not_builds():
    assert writer_build("14.0.0.0") is None
    assert writer_build("15.0.0.0") is None
    assert writer_build("15.02.1544.014") == "15.2.1544.14"
    assert writer_build("") is None
