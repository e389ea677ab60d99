from datetime import datetime, timezone

from pipeline.domain.events import SourcePosition
from pipeline.domain.parsers import postfix

REFERENCE = datetime(2026, 11, 27, tzinfo=timezone.utc)


def test_messages_are_assembled_from_their_queue_id_lines(samples, feed):
    lines = (samples / "postfix" / "mail.log").read_text().splitlines()
    traces, errors, state = feed(postfix, lines, reference=REFERENCE)
    assert state == {"open": {}}
    assert [str(e) for e in errors] == ["sample:13: field timestamp: no syslog time stamp at the start of the line"]
    first, second, third = traces
    assert first.event_time == datetime(2026, 2, 16, 11, 20, 32, tzinfo=timezone.utc)
    assert (first.client_hostname, first.client_ip, first.total_bytes) == ("mail19.fabrikam.example", "198.51.100.29", 15230)
    assert first.message_id == "<b2c3d4e6@EX19MBX03.fabrikam.example>"
    assert len(first.received) == 2 and "id 15.2.1544.14" in first.received[1]
    assert first.received[0].startswith("from mail19.fabrikam.example (mail19.fabrikam.example [198.51.100.29])\tby mx1")
    assert (second.client_hostname, second.received) == ("smtp.wingtip.example", ())
    assert (third.client_hostname, third.client_ip) == (None, "192.0.2.150")
    assert third.event_time == datetime(2026, 2, 16, 12, 2, 44, 318211, tzinfo=timezone.utc)  # cut to ms by dispatch


def test_syslog_year_comes_from_the_reference_and_wraps_at_new_year(feed):
    line = "Dec 31 23:59:58 mx1 postfix/smtpd[1]: ABCDEF123: client=a.example[192.0.2.1]"
    done = "Jan  1 00:00:01 mx1 postfix/qmgr[2]: ABCDEF123: from=<a@b>, size=10, nrcpt=1 (queue active)"
    [trace], _, _ = feed(postfix, [line, done], reference=datetime(2027, 1, 1, 0, 5, tzinfo=timezone.utc))
    assert trace.event_time == datetime(2026, 12, 31, 23, 59, 58, tzinfo=timezone.utc)


def test_without_a_reference_a_bsd_stamp_is_an_error(feed):
    _, [error], _ = feed(postfix, ["Feb 16 11:20:32 mx1 postfix/smtpd[2012]: X: client=a[1.2.3.4]"], reference=None)
    assert error.field == "timestamp"


def test_open_messages_are_emitted_at_the_end_and_when_too_many(feed):
    lines = [f"2026-02-16T11:00:{i:02d}Z mx1 postfix/smtpd[1]: Q{i:05d}ABC: client=h{i}.example[192.0.2.{i}]" for i in range(5)]
    old = postfix.MAX_OPEN
    postfix.MAX_OPEN = 3
    try:
        traces, _, state = feed(postfix, lines, reference=None)
    finally:
        postfix.MAX_OPEN = old
    assert [t.client_hostname for t in traces] == ["h0.example", "h1.example"]
    _, rest = postfix.finish(state, SourcePosition("sample", 5))
    assert [t.client_hostname for t in rest] == ["h2.example", "h3.example", "h4.example"]
