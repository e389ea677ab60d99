from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pipeline.domain.config import FormatConfig, PolicyConfig
from pipeline.domain.identity import sightings
from pipeline.domain.parsers import exim


def test_arrivals_with_host_name_helo_only_and_time_zone(samples, feed):
    lines = (samples / "exim" / "mainlog").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert [(t.event_time, t.client_hostname, t.client_ip, t.total_bytes, t.sender) for t in traces] == [
        (datetime(2026, 2, 20, 8, 14, 1, tzinfo=UTC), "mail.fabrikam.example", "203.0.113.25", 8342,
         "billing@fabrikam.example"),
        (datetime(2026, 2, 20, 8, 30, 17, 412000, tzinfo=UTC), None, "192.0.2.201", 1290, None),
    ]
    assert traces[0].message_id == "4472.20260220@app01.fabrikam.example"
    assert [str(e) for e in errors] == [
        "sample:7: field timestamp: no Exim time stamp (YYYY-MM-DD HH:MM:SS) at the start"]


def test_a_main_log_that_starts_with_connections_and_rejections(samples, feed):
    # log_timezone and +pid: every line has its offset and the pid after the stamp. The first line
    # is a connection, not an arrival; rejections, failed logins and queue runs are not errors.
    lines = (samples / "exim" / "mx3-mainlog").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert errors == []
    assert [(t.event_time.strftime("%H:%M:%S"), t.client_hostname, t.client_ip, t.total_bytes) for t in traces] == [
        ("02:20:14", "mail.proseware.example", "192.0.2.97", 18220),
        ("02:31:52", None, None, 912),       # H=localhost [127.0.0.1]
        ("08:15:04", None, None, 2381),      # P=esmtpsa A=dovecot_plain:alice
        ("08:40:21", None, None, 1820),      # webmail on [::1], authenticated
        ("09:02:00", None, None, 1204),      # U=www-data P=local, no H=
        ("09:45:34", "mx01.alpineskihouse.example", "198.51.100.90", 55310),
    ]
    assert [seen.server for trace in traces for seen in sightings(trace, PolicyConfig())] == [
        "mail.proseware.example", "mx01.alpineskihouse.example"]


@pytest.mark.parametrize("rest", [
    "1rhQ2x-0004Ab-7K => user <user@example.net> R=localuser T=local_delivery",
    "1vDm9G-0000000F3wb-1R0u Completed",
    "exim 4.97.1 daemon started: pid=812, -q30m, listening for SMTP on [0.0.0.0]:25",
    "H=(helo) [198.51.100.7]:4321 F=<a@b.example> rejected RCPT <x@y.example>: relay not permitted",
    "dovecot_login authenticator failed for (User) [203.0.113.9]:51234: 535 Incorrect authentication data (set_id=foo)",
    "SMTP connection from [192.0.2.1]:1234 (TCP/IP connection count = 1)",
    "SMTP connection from (helo) [192.0.2.1]:1234 lost D=12s",
    "SMTP command timeout on connection from (helo) [192.0.2.1]:1234",
    "TLS error on connection from [192.0.2.3]:60211 (SSL_accept): error:0A000126:SSL routines::unexpected eof "
    "while reading",
    "Start queue run: pid=1234",
    "End queue run: pid=1234",
    "no host name found for IP address 192.0.2.3",
    "no IP address found for host mail.example (during SMTP connection from [192.0.2.3])",
    "unexpected disconnection while reading SMTP command from (helo) [192.0.2.1]:1234 D=0s",
    "Connection from [192.0.2.1]:1234 refused: too many connections from that IP address",
    "rejected EHLO from [192.0.2.1]:1234: syntactically invalid argument(s): _",
    "U=www-data F=<www-data@mx3.example.net> rejected RCPT <x@y.example>: sender verify failed",
    "cwd=/var/spool/exim4 3 args: /usr/sbin/exim4 -bpc",
    "pid 812: SIGHUP received: re-exec daemon",
    "Warning: purging the environment.",
])
@pytest.mark.parametrize("stamp", ["2026-03-07 02:09:33", "2026-03-07 02:09:33.412 +0100 [24310]",
                                   "2026-03-07 02:09:33 [24310]"])
def test_any_main_log_line_makes_an_exim_log(stamp, rest):
    assert exim.looks_like(f"{stamp} {rest}")


@pytest.mark.parametrize("line", [
    "2026-03-07 02:09:33,123 INFO worker started",
    "2026-03-07 02:09:33 started the backup of /srv",
    "2026-03-07T02:09:33+01:00 mx1 postfix/smtpd[1]: connect from a[192.0.2.1]",
    "Mar  7 02:09:33 mx1 exim[1]: 1rhQ2x-0004Ab-7K <= a@b.example H=b.example [192.0.2.2] P=esmtp S=10",
])
def test_other_lines_that_start_with_a_date_are_not_exim(line):
    assert not exim.looks_like(line)


def test_the_tls_peer_certificate_name_is_read_for_the_scope(feed):
    line = ("2026-03-07 02:09:33 1vDm9G-0000000F3wb-1R0u <= a@contoso.example H=ex16edge01.contoso.example "
            "[198.51.100.17]:51544 P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes "
            'DN="/CN=ex16edge01.contoso.example" S=8342 id=<m1@contoso.example>')
    [trace], errors, _ = feed([line])
    assert errors == [] and trace.tls_peer == "ex16edge01.contoso.example"
    config = PolicyConfig.from_mapping({"scope": {"tls_peers": ["*.contoso.example"]}})
    assert [s.in_scope for s in sightings(trace, config)] == [True]
    [plain], _, _ = feed([line.replace('DN="/CN=ex16edge01.contoso.example" ', "")])
    assert plain.tls_peer is None and [s.in_scope for s in sightings(plain, config)] == [False]


def test_a_stamp_without_log_timezone_is_read_in_the_servers_zone(make_source):
    line = ("2026-07-10 12:00:00 1vZz9G-0000000F3wb-1R0u <= billing@fabrikam.example H=mail.fabrikam.example "
            "(mail.fabrikam.example) [203.0.113.25]:51544 P=esmtps S=8342 id=1@fabrikam.example")
    berlin = make_source(formats=FormatConfig(syslog_zone=ZoneInfo("Europe/Berlin"))).feed([line, line.replace(
        "12:00:00", "12:00:00 +0000")])
    assert [t.event_time for t in berlin.out.traces] == [datetime(2026, 7, 10, 10, tzinfo=UTC),
                                                         datetime(2026, 7, 10, 12, tzinfo=UTC)]
