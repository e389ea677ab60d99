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


def test_unknown_first_line_is_an_error_and_the_format_is_kept_per_source(make_source):
    source = make_source().feed(["hello world"])
    [error] = source.out.errors
    assert error.reason == "unknown format: not a line of any supported log"
    source.feed(["#Software: Microsoft Exchange Server"])
    assert source.state["format"] == "msgtrk"


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
    assert source.state["format"] == "msgtrk"
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
    assert passes[0] == passes[1] == ["ex13mbx02", "ex13mbx02.tailspin.example"]
