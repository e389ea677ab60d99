from datetime import datetime, timezone

from pipeline.domain.parsers import postfix

REFERENCE = datetime(2026, 11, 27, tzinfo=timezone.utc)


def test_messages_are_assembled_from_their_queue_id_lines(samples, feed):
    lines = (samples / "postfix" / "mail.log").read_text().splitlines()
    traces, errors, state = feed(lines, reference=REFERENCE)
    assert (state["open"], state["oldest_ms"]) == (0, None)
    assert [str(e) for e in errors] == ["sample:13: field timestamp: no syslog time stamp at the start of the line"]
    first, second, third = traces
    assert first.event_time == datetime(2026, 2, 16, 11, 20, 32, tzinfo=timezone.utc)
    assert (first.client_hostname, first.client_ip, first.total_bytes) == ("mail19.fabrikam.example", "198.51.100.29", 15230)
    assert first.message_id == "<b2c3d4e6@EX19MBX03.fabrikam.example>"
    assert len(first.received) == 2 and "id 15.2.1544.14" in first.received[1]
    assert first.received[0].startswith("from mail19.fabrikam.example (mail19.fabrikam.example [198.51.100.29])\tby mx1")
    assert (second.client_hostname, second.received) == ("smtp.wingtip.example", ())
    assert (third.client_hostname, third.client_ip) == (None, "192.0.2.150")
    assert third.event_time == datetime(2026, 2, 16, 12, 2, 44, 318000, tzinfo=timezone.utc)  # cut to ms


def test_syslog_year_comes_from_the_reference_and_wraps_at_new_year(feed):
    line = "Dec 31 23:59:58 mx1 postfix/smtpd[1]: ABCDEF123: client=a.example[192.0.2.1]"
    done = "Jan  1 00:00:01 mx1 postfix/qmgr[2]: ABCDEF123: from=<a@b>, size=10, nrcpt=1 (queue active)"
    [trace], _, _ = feed([line, done], reference=datetime(2027, 1, 1, 0, 5, tzinfo=timezone.utc))
    assert trace.event_time == datetime(2026, 12, 31, 23, 59, 58, tzinfo=timezone.utc)


def test_without_a_reference_a_bsd_stamp_is_an_error(feed):
    _, [error], _ = feed(["Feb 16 11:20:32 mx1 postfix/smtpd[2012]: X: client=a[1.2.3.4]"], reference=None)
    assert error.field == "timestamp"


def opened(count, start_second=0, step_s=1):
    """Lines that open messages (client=) whose queue-active line never comes."""
    return [f"2026-02-16T11:00:00Z mx1 postfix/smtpd[1]: Q{i:06d}ABC: client=h{i}.example[192.0.2.{i % 250}]"
            .replace("11:00:00", f"{11 + (start_second + i * step_s) // 3600:02d}:{(start_second + i * step_s) // 60 % 60:02d}:"
                                  f"{(start_second + i * step_s) % 60:02d}")
            for i in range(count)]


def test_open_messages_are_emitted_at_the_end_of_the_source(make_source):
    source = make_source().feed(opened(3))
    assert source.out.traces == [] and len(source.open_messages) == 3
    source.finish()
    assert [t.client_hostname for t in source.out.traces] == ["h0.example", "h1.example", "h2.example"]
    assert (source.state["parser"]["open"], dict(source.open_messages)) == (0, {})


def test_beyond_max_open_the_oldest_are_emitted_and_a_tenth_is_left_free(monkeypatch, make_source):
    monkeypatch.setattr(postfix, "MAX_OPEN", 10)
    source = make_source().feed(opened(11))
    assert [t.client_hostname for t in source.out.traces] == ["h0.example", "h1.example"]
    assert source.state["parser"]["open"] == len(source.open_messages) == 9


def test_messages_open_longer_than_the_age_limit_are_emitted(make_source):
    # A message every half hour: when a line comes more than an hour after the oldest open
    # message, that one is emitted with what is known, and whatever would expire soon with it.
    source = make_source().feed(opened(3, step_s=1800))
    assert source.out.traces == []
    source.feed(opened(4, step_s=1800)[3:])
    assert [t.client_hostname for t in source.out.traces] == ["h0.example", "h1.example"]
    assert source.state["parser"]["open"] == len(source.open_messages) == 2


def test_100000_open_messages_keep_a_small_source_state(make_source):
    import json

    source = make_source().feed(opened(100_000, step_s=0))
    assert len(source.open_messages) == 100_000 and source.out.traces == []
    assert len(json.dumps(source.state)) < 1_000
    assert max(len(json.dumps(message)) for message in source.open_messages.values()) < 200
