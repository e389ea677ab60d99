from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.parsers import dispatch


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


def test_unknown_first_line_is_an_error_and_the_format_is_kept_per_source():
    state, [error] = dispatch.parse_line(None, "hello world", SourcePosition("s", 1))
    assert error.reason == "unknown format: not a line of any supported log"
    state, _ = dispatch.parse_line(state, "#Software: Microsoft Exchange Server", SourcePosition("s", 2))
    assert state["format"] == "msgtrk"


def test_short_host_names_join_the_fqdn_seen_earlier_in_the_source():
    state = dispatch.new_state()
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.01.2507.039",
        "#Fields: date-time,client-hostname,server-hostname,event-id",
        "2026-02-10T08:14:03.000Z,EX16MBX01.contoso.example,mx.partner.example,SEND",
        "2026-02-10T08:14:04.000Z,app1.contoso.example,EX16MBX01,RECEIVE",
    ]
    traces = []
    for number, line in enumerate(lines, start=1):
        state, results = dispatch.parse_line(state, line, SourcePosition("s", number))
        traces += results
    assert all(isinstance(t, MessageTrace) for t in traces)
    assert [t.logged_by for t in traces] == ["ex16mbx01.contoso.example", "ex16mbx01.contoso.example"]
    assert state["hosts"]["ex16mbx01"] == "ex16mbx01.contoso.example"


def test_event_times_are_cut_to_milliseconds():
    line = "2026-02-16T12:02:44.318211+00:00 mx1 postfix/smtpd[1]: ABCDEF1: client=a.example[192.0.2.1]"
    state, _ = dispatch.parse_line(None, line, SourcePosition("s", 1))
    _, [trace] = dispatch.finish(state, SourcePosition("s", 1))
    assert trace.event_time.microsecond == 318000


def test_reading_the_same_file_twice_gives_the_same_events():
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Fields: date-time,client-hostname,server-hostname,event-id",
        "2026-01-20T07:12:45.301Z,EX13MBX02,EX13MBX02,RECEIVE",
        "2026-01-20T07:12:46.055Z,EX13MBX02.tailspin.example,mx.partner.example,SEND",
    ]
    state, passes = None, []
    for _ in range(2):
        traces = []
        for number, line in enumerate(lines, start=1):
            state, results = dispatch.parse_line(state, line, SourcePosition("s", number))
            traces += results
        passes.append([t.logged_by for t in traces])
    assert passes[0] == passes[1] == ["ex13mbx02", "ex13mbx02.tailspin.example"]
