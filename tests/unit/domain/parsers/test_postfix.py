from datetime import UTC, datetime

import pytest

from pipeline.domain.config import PolicyConfig
from pipeline.domain.identity import sightings
from pipeline.domain.parsers import postfix

REFERENCE = datetime(2026, 11, 27, tzinfo=UTC)
# As tests/samples.toml: our own MX hosts are trusted receivers.
CONFIG = PolicyConfig(trusted_receivers=("*.outlook.com", "*.protection.outlook.com", "mx*.example.net"))


def servers(traces):
    """Every server the traces name, with its build, as identity reads them."""
    return [(seen.server, seen.build) for trace in traces for seen in sightings(trace, CONFIG)]


def test_messages_are_assembled_from_their_queue_id_lines(samples, feed):
    lines = (samples / "postfix" / "mail.log").read_text().splitlines()
    traces, errors, state = feed(lines, reference=REFERENCE)
    assert (state.open, state.oldest_ms) == (0, None)
    assert [str(e) for e in errors] == ["sample:13: field timestamp: no syslog time stamp at the start of the line"]
    first, second, third = traces
    assert first.event_time == datetime(2026, 2, 16, 11, 20, 32, tzinfo=UTC)
    assert (first.client_hostname, first.client_ip, first.total_bytes) == (
        "mail19.fabrikam.example", "198.51.100.29", 15230)
    assert first.message_id == "<b2c3d4e6@EX19MBX03.fabrikam.example>"
    # cleanup wrote the folded headers' line breaks as "?", and cut the second at 200 characters.
    assert first.received == (
        "from mail19.fabrikam.example (mail19.fabrikam.example [198.51.100.29])  by mx1.example.net (Postfix) with "
        "ESMTPS id 4TqN1c2Vb8z1  for <jo@example.net>; Mon, 16 Feb 2026 11:20:32 +0000 (UTC)",
        "from EX19MBX03.fabrikam.example (198.51.100.23) by  mail19.fabrikam.example (198.51.100.29) with Microsoft "
        "SMTP Server id  15.2.1544.14 via Frontend Transport; Mon, 16 Feb 2026 11:20:31",
    )
    # Sent by a user's mail program (submission, SASL): no server.
    assert (second.client_hostname, second.client_ip, second.received) == (None, None, ())
    assert (third.client_hostname, third.client_ip) == (None, "192.0.2.150")
    assert third.event_time == datetime(2026, 2, 16, 12, 2, 44, 318000, tzinfo=UTC)  # cut to ms


def test_a_content_filter_and_users_mail_programs_are_not_servers(samples, feed):
    # amavis on 10024/10026 hands every message back to the 10025 smtpd from localhost (XFORWARD):
    # the same message again under a new queue id. Submission and smtps clients logged in (SASL).
    lines = (samples / "postfix" / "mx2-mail.log").read_text().splitlines()
    traces, errors, _ = feed(lines, reference=REFERENCE)
    assert errors == []  # amavis, dovecot, opendkim, policyd-spf and spamd lines are skipped
    assert [(t.event_time.strftime("%H:%M:%S"), t.client_hostname, t.client_ip, t.total_bytes, len(t.received))
            for t in traces] == [
        ("02:09:32", "mail.litware.example", "198.51.100.41", 6120, 2),
        ("02:09:33", None, None, 7034, 0),   # reinjected: its four Received headers are left out
        ("08:15:04", None, None, 2381, 0),   # submission, sasl_method=PLAIN
        ("08:15:05", None, None, 3012, 0),   # reinjected
        ("09:02:52", None, None, 1530, 0),   # smtps, sasl_method=LOGIN
        ("09:02:53", None, None, 2204, 0),   # reinjected
        ("09:30:12", "mta1.treyresearch.example", "192.0.2.88", 41822, 2),
        ("09:30:14", None, None, 42610, 0),  # reinjected from localhost[::1]
    ]
    assert traces[0].event_time == datetime(2026, 3, 7, 2, 9, 32, tzinfo=UTC)  # "Mar 7", not padded
    assert traces[0].message_id == traces[1].message_id
    # Each message counted once, by the server that handed it to us.
    assert servers(traces) == [("mail.litware.example", "15.2.1544.14"), ("mta1.treyresearch.example", None)]


@pytest.mark.parametrize("client_line", [
    "Mar 7 10:00:00 mx2 postfix/10025/smtpd[1]: ABCDEF123: client=mx2.example.net[127.0.0.1]",
    "Mar 7 10:00:00 mx2 postfix/smtpd[1]: ABCDEF123: client=localhost[::1]",
    "Mar 7 10:00:00 mx2 postfix/submission/smtpd[1]: ABCDEF123: client=pc7.example.net[192.0.2.7]",
    "Mar 7 10:00:00 mx2 postfix/submissions/smtpd[1]: ABCDEF123: client=unknown[192.0.2.7]",
    "Mar 7 10:00:00 mx2 postfix/smtpd[1]: ABCDEF123: client=unknown[192.0.2.7], sasl_method=CRAM-MD5, sasl_username=jo",
])
def test_loopback_and_authenticated_clients_name_no_server(feed, client_line):
    header = ("Mar 7 10:00:00 mx2 postfix/cleanup[2]: ABCDEF123: warning: header Received: from b.example (b.example "
              "[198.51.100.2]) by a.example (198.51.100.1) with Microsoft SMTP Server id 15.0.1497.2; Sat, 7 Mar 2026 "
              "09:59:59 +0000 from unknown[192.0.2.7]; from=<jo@example.net> to=<kim@b.example> proto=ESMTP helo=<pc7>")
    done = "Mar 7 10:00:01 mx2 postfix/qmgr[3]: ABCDEF123: from=<jo@example.net>, size=10, nrcpt=1 (queue active)"
    [trace], errors, _ = feed([client_line, header, done], reference=REFERENCE)
    assert errors == [] and servers([trace]) == []
    assert (trace.client_hostname, trace.client_ip, trace.received, trace.recipients) == (
        None, None, (), ("kim@b.example",))


def test_a_received_header_cut_at_the_log_limit_loses_its_cut_word(feed):
    # Exchange folds its header; cleanup logs it with "?" for the line breaks, cut at 200 characters
    # in the middle of the build. 15.2.1544.1 would be a wrong build: the cut word is left out.
    cut = ("Received: from LW-EX19-01.litware.example (10.20.0.11) by? mail.litware.example (10.20.0.105) "
           "with Microsoft SMTP Server? (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id? "
           "15.2.1544.1")
    assert len(cut) == 200
    lines = [
        "Mar 7 02:09:32 mx2 postfix/smtpd[1]: 4R7bKx3Ht2z7Lq: client=mail.litware.example[198.51.100.41]",
        f"Mar 7 02:09:32 mx2 postfix/cleanup[2]: 4R7bKx3Ht2z7Lq: warning: header {cut} from mail.litware.example"
        "[198.51.100.41]; from=<orders@litware.example> to=<jo@example.net> proto=ESMTP helo=<mail.litware.example>",
        "Mar 7 02:09:32 mx2 postfix/qmgr[3]: 4R7bKx3Ht2z7Lq: from=<orders@litware.example>, size=6120, nrcpt=1 "
        "(queue active)",
    ]
    [trace], errors, _ = feed(lines, reference=REFERENCE)
    assert errors == [] and trace.received[0].endswith("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id ")
    assert servers([trace]) == [("mail.litware.example", None)]


SYSLOG = [
    "Mar 7 06:25:01 mx2 postfix/smtpd[1]: ABCDEF123: client=a.example[192.0.2.1]",
    "Mar 7 06:25:01 mx2 CRON[2290]: (root) CMD (test -x /usr/sbin/anacron || "
    "{ cd / && run-parts --report /etc/cron.daily; })",
    "Mar 7 06:25:02 mx2 kernel: [81234.567890] [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.9 DST=192.0.2.25 PROTO=TCP "
    "DPT=23",
    "Mar 7 06:25:02 mx2 systemd[1]: Starting logrotate.service - Rotate log files...",
    "Mar 7 06:25:02 mx2 postfix/postfix-script[2298]: refreshing the Postfix mail system",
    "Mar 7 06:25:03 mx2 sshd[2301]: Invalid user admin from 203.0.113.9 port 40022",
    "Mar 7 06:25:03 mx2 dovecot: pop3-login: Disconnected (no auth attempts in 0 secs): user=<>, rip=203.0.113.9",
    "2026-03-07T06:25:03.118202+00:00 mx2 amavis[2210]: (02210-02) Passed CLEAN {RelayedInbound}, [192.0.2.1]:4011",
    "Mar 7 06:25:04 mx2 postfix/qmgr[3]: ABCDEF123: from=<a@a.example>, size=10, nrcpt=1 (queue active)",
    "Mar 7 06:25:04 mx2 postfix/smtpd: ABCDEF124: client=b.example[192.0.2.2]",
    "Mar 7 06:25:04 mx2 exim[2400]: 1vE6Hm-0000000F4gH-1Tv6 <= a@b.example H=b.example [192.0.2.2] P=esmtp S=10",
    "Mar 7 06:25:05 mx2 last message repeated 2 times",
    "truncated by a rotation: no stamp",
]


def test_other_programs_are_skipped_and_lines_of_no_program_or_no_stamp_are_errors(feed):
    [trace], errors, _ = feed(SYSLOG, reference=REFERENCE)
    assert trace.client_hostname == "a.example"
    assert [(e.position.line, e.field) for e in errors] == [
        (10, "program"), (11, "program"), (12, "program"), (13, "timestamp")]


def test_lines_of_other_programs_are_told_apart_before_the_format_is_known():
    assert [postfix.syslog_other_program(line) for line in SYSLOG] == [
        False, True, True, True, False, True, True, True, False, False, False, False, False,
    ]


def test_syslog_year_comes_from_the_reference_and_wraps_at_new_year(feed):
    line = "Dec 31 23:59:58 mx1 postfix/smtpd[1]: ABCDEF123: client=a.example[192.0.2.1]"
    done = "Jan  1 00:00:01 mx1 postfix/qmgr[2]: ABCDEF123: from=<a@b>, size=10, nrcpt=1 (queue active)"
    [trace], _, _ = feed([line, done], reference=datetime(2027, 1, 1, 0, 5, tzinfo=UTC))
    assert trace.event_time == datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)


def test_without_a_reference_a_bsd_stamp_is_an_error(feed):
    _, [error], _ = feed(["Feb 16 11:20:32 mx1 postfix/smtpd[2012]: X: client=a[1.2.3.4]"], reference=None)
    assert error.field == "timestamp"


def opened(count, start_second=0, step_s=1):
    """Lines that open messages (client=) whose queue-active line never comes."""
    return [f"2026-02-16T11:00:00Z mx1 postfix/smtpd[1]: Q{i:06d}ABC: client=h{i}.example[192.0.2.{i % 250}]"
            .replace("11:00:00", f"{11 + (start_second + i * step_s) // 3600:02d}:"
                                  f"{(start_second + i * step_s) // 60 % 60:02d}:"
                                  f"{(start_second + i * step_s) % 60:02d}")
            for i in range(count)]


def test_open_messages_are_emitted_at_the_end_of_the_source(make_source):
    source = make_source().feed(opened(3))
    assert source.out.traces == [] and len(source.open_messages) == 3
    source.finish()
    assert [t.client_hostname for t in source.out.traces] == ["h0.example", "h1.example", "h2.example"]
    assert (source.state.parser.open, dict(source.open_messages)) == (0, {})


def test_beyond_max_open_the_oldest_are_emitted_and_a_tenth_is_left_free(monkeypatch, make_source):
    monkeypatch.setattr(postfix, "MAX_OPEN", 10)
    source = make_source().feed(opened(11))
    assert [t.client_hostname for t in source.out.traces] == ["h0.example", "h1.example"]
    assert source.state.parser.open == len(source.open_messages) == 9


def test_messages_open_longer_than_the_age_limit_are_emitted(make_source):
    # A message every half hour: when a line comes more than an hour after the oldest open
    # message, that one is emitted with what is known, and whatever would expire soon with it.
    source = make_source().feed(opened(3, step_s=1800))
    assert source.out.traces == []
    source.feed(opened(4, step_s=1800)[3:])
    assert [t.client_hostname for t in source.out.traces] == ["h0.example", "h1.example"]
    assert source.state.parser.open == len(source.open_messages) == 2


def test_100000_open_messages_keep_a_small_source_state(make_source):
    import json

    source = make_source().feed(opened(100_000, step_s=0))
    assert len(source.open_messages) == 100_000 and source.out.traces == []
    assert len(json.dumps(source.state.to_json())) < 1_000
    assert max(len(json.dumps(message)) for message in source.open_messages.values()) < 200


def test_the_smtpd_service_is_the_inbound_path_the_scope_names(feed):
    lines = [
        "Mar  7 02:09:33 mx1 postfix/hybrid/smtpd[4711]: 4T9xYz1: client=ex16edge01.contoso.example[198.51.100.17]",
        "Mar  7 02:09:34 mx1 postfix/qmgr[1001]: 4T9xYz1: from=<a@contoso.example>, size=100, nrcpt=1 (queue active)",
        "Mar  7 02:09:35 mx1 postfix/smtpd[4712]: 4T9xYz2: client=mail.partner.example[203.0.113.5]",
        "Mar  7 02:09:36 mx1 postfix/qmgr[1001]: 4T9xYz2: from=<b@partner.example>, size=100, nrcpt=1 (queue active)",
    ]
    traces, errors, _ = feed(lines, reference=REFERENCE)
    assert errors == [] and [t.connector_id for t in traces] == ["postfix/hybrid/smtpd", "postfix/smtpd"]
    config = PolicyConfig.from_mapping({"scope": {"connectors": ["postfix/hybrid/*"]}})
    assert [(s.server, s.in_scope) for t in traces for s in sightings(t, config)] == [
        ("ex16edge01.contoso.example", True), ("mail.partner.example", False)]


def test_a_mail_log_may_open_with_another_programs_line(make_source):
    source = make_source(reference=REFERENCE).feed([
        "Mar  7 02:09:30 mx1 amavis[2210]: (02210-01) Passed CLEAN {RelayedInbound}, [198.51.100.17]",
        "Mar 7 02:09:31 mx1 dovecot: imap-login: Login: user=<alice>",
        "Mar  7 02:09:33 mx1 postfix/smtpd[4711]: 4T9xYz1: client=mail.partner.example[203.0.113.5]",
    ]).finish()
    assert source.out.errors == [] and source.state.format == "postfix"
    assert [t.client_hostname for t in source.out.traces] == ["mail.partner.example"]


def test_a_message_is_placed_at_the_line_and_byte_it_started_at():
    from pipeline.domain.events import SourcePosition
    from pipeline.domain.lines import LineRun
    from pipeline.domain.parsers import dispatch
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows
    from pipeline.domain.parsers.postfix import MemoryOpenMessages
    from tests.unit.domain.parsers.conftest import Collected

    lines = ["Feb 16 11:20:30 mx1 postfix/smtpd[2012]: connect from unknown[192.0.2.1]",
             "Feb 16 11:20:32 mx1 postfix/smtpd[2012]: 4TqN1c2Vb8z1: client=mail19.fabrikam.example[198.51.100.29]",
             "Feb 16 11:20:34 mx1 postfix/qmgr[1480]: 4TqN1c2Vb8z1: from=<kim@fabrikam.example>, size=2100, nrcpt=1 "
             "(queue active)"]
    run = LineRun.packed("/var/log/mail.log", "".join(line + "\n" for line in lines).encode(), 101, 9000, REFERENCE)
    out = Collected()
    dispatch.parse_run(None, run, out, MemoryOpenMessages(), TrackingRows())
    [trace] = out.traces
    assert trace.position == SourcePosition("/var/log/mail.log", 102, 9000 + len(lines[0]) + 1)
