from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.domain.parsers.syslog import program, split_stamp, without_stamp

REFERENCE = datetime(2026, 11, 27, tzinfo=UTC)
REST = "mx1 postfix/smtpd[2012]: connect from a.example[192.0.2.1]"


@pytest.mark.parametrize("stamp", ["Mar  7 02:09:33", "Mar 7 02:09:33", "Mar 07 02:09:33"])
def test_a_bsd_day_may_be_space_padded_or_not(stamp):
    assert split_stamp(f"{stamp} {REST}", REFERENCE) == (datetime(2026, 3, 7, 2, 9, 33, tzinfo=UTC), REST)


@pytest.mark.parametrize("stamp, utc", [
    # rsyslog's RSYSLOG_FileFormat: microseconds and the local offset.
    ("2026-03-07T02:09:33.123456+01:00", datetime(2026, 3, 7, 1, 9, 33, 123456, tzinfo=UTC)),
    ("2026-03-07T02:09:33.123-05:00", datetime(2026, 3, 7, 7, 9, 33, 123000, tzinfo=UTC)),
    ("2026-03-07T02:09:33Z", datetime(2026, 3, 7, 2, 9, 33, tzinfo=UTC)),
    ("2026-03-07T02:09:33+0100", datetime(2026, 3, 7, 1, 9, 33, tzinfo=UTC)),
    ("2026-03-07T02:09:33", datetime(2026, 3, 7, 2, 9, 33, tzinfo=UTC)),  # no offset: UTC
])
def test_rfc_3339_stamps_need_no_reference(stamp, utc):
    assert split_stamp(f"{stamp} {REST}", None) == (utc, REST)


def test_a_bsd_stamp_takes_the_year_that_does_not_put_it_more_than_a_day_ahead():
    new_year = datetime(2027, 1, 1, 0, 5, tzinfo=UTC)
    assert split_stamp(f"Dec 31 23:59:58 {REST}", new_year)[0] == datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert split_stamp(f"Jan  2 00:04:00 {REST}", new_year)[0] == datetime(2027, 1, 2, 0, 4, tzinfo=UTC)
    assert split_stamp(f"Jan  2 00:06:00 {REST}", new_year)[0] == datetime(2026, 1, 2, 0, 6, tzinfo=UTC)
    # Feb 29 is no date in 2029: the line is from 2028.
    assert split_stamp(f"Feb 29 10:00:00 {REST}", datetime(2029, 3, 1, tzinfo=UTC))[0] == (
        datetime(2028, 2, 29, 10, tzinfo=UTC))


@pytest.mark.parametrize("line, reason", [
    (f"Feb 30 10:00:00 {REST}", "'Feb 30 10:00:00' is not a date"),
    (f"Foo  7 10:00:00 {REST}", "'Foo  7 10:00:00' is not a date"),
    (f"Mar  7 25:00:00 {REST}", "'Mar  7 25:00:00' is not a date"),
    ("this line was cut by a log rotation", "no syslog time stamp at the start of the line"),
])
def test_a_line_without_a_usable_stamp_says_why(line, reason):
    assert split_stamp(line, REFERENCE) == reason


def test_a_bsd_stamp_without_a_reference_has_no_year():
    assert split_stamp(f"Mar  7 02:09:33 {REST}", None) == \
        "syslog time has no year and the line came with no reference time"


@pytest.mark.parametrize("rest, name", [
    (REST, "postfix/smtpd"),
    ("mx1 postfix/10025/smtpd[1110]: 4R7bKy0Nc5z7Ld: client=localhost[127.0.0.1]", "postfix/10025/smtpd"),
    ("mx1 dovecot: imap-login: Login: user=<jo@example.net>", "dovecot"),
    ("mx1 amavis[2210]: (02210-01) Passed CLEAN {RelayedInbound}", "amavis"),
    ("mx1 /usr/sbin/cron[812]: (root) CMD (run-parts /etc/cron.hourly)", "/usr/sbin/cron"),
    ("mx1 last message repeated 2 times", None),
    ("mx1 -- MARK --", None),
])
def test_the_program_of_a_line(rest, name):
    assert program(rest) == name
    assert without_stamp(f"Mar 7 02:09:33 {rest}") == rest


def test_a_day_ahead_of_the_reference_is_the_limit():
    ahead = REFERENCE + timedelta(days=1)
    assert split_stamp(f"{ahead:%b %d %H:%M:%S} {REST}", REFERENCE)[0] == ahead
    assert split_stamp(f"{ahead:%b %d} 00:00:01 {REST}", REFERENCE)[0] == ahead.replace(year=2025, second=1)


BERLIN = ZoneInfo("Europe/Berlin")


def test_stamps_without_an_offset_are_read_in_the_servers_zone_and_the_year_turns_there():
    # 23:30 UTC on New Year's Eve is already 00:30 on 1 January in Berlin.
    reference = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert split_stamp("Jan  1 00:20:00 mx1 postfix/smtpd[1]: x", reference, BERLIN)[0] == datetime(
        2026, 12, 31, 23, 20, tzinfo=UTC)
    assert split_stamp("Dec 31 23:59:00 mx1 postfix/smtpd[1]: x", reference, BERLIN)[0] == datetime(
        2026, 12, 31, 22, 59, tzinfo=UTC)
    # Summer time: two hours ahead of UTC.
    assert split_stamp("Jul 10 12:00:00 mx1 postfix/smtpd[1]: x", reference, BERLIN)[0] == datetime(
        2026, 7, 10, 10, 0, tzinfo=UTC)
    assert split_stamp("2026-07-10T12:00:00 mx1 postfix/smtpd[1]: x", None, BERLIN)[0] == datetime(
        2026, 7, 10, 10, 0, tzinfo=UTC)
    # A stamp with its offset says its zone itself.
    assert split_stamp("2026-07-10T12:00:00+00:00 mx1 postfix/smtpd[1]: x", None, BERLIN)[0] == datetime(
        2026, 7, 10, 12, 0, tzinfo=UTC)
