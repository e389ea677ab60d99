"""Short writer names of message tracking logs joined to their FQDN, and the rows held in the
file's state until it names its writer in full (identity_writers), fed through the dispatcher."""
from datetime import UTC, datetime

import orjson
import pytest

from pipeline.domain.events import SourcePosition, epoch_ms
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers import dispatch
from pipeline.domain.parsers.dispatch import SourceState
from pipeline.domain.parsers.msgtrk_rows import TrackingRows
from tests.unit.domain.parsers.conftest import SAMPLES, Source
from tests.unit.domain.parsers.test_msgtrk import F30, feed_packed, header


@pytest.fixture
def samples():
    return SAMPLES


@pytest.fixture
def make_source():
    return Source


def test_short_writer_names_join_the_fqdn_of_the_same_file_only(make_source):
    fields = "date-time,client-hostname,server-hostname,event-id,message-id"
    lines = [
        "#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039", f"#Fields: {fields}",
        "2026-02-10T08:14:02.000Z,app1.contoso.example,EX16MBX01,RECEIVE,<m0@x>",
        "2026-02-10T08:14:03.000Z,EX16MBX01.contoso.example,mx.partner.example,SEND,<m1@x>",
        "2026-02-10T08:14:04.000Z,app1.contoso.example,EX16MBX01,RECEIVE,<m2@x>",
        "#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039", f"#Fields: {fields}",
        "2026-02-11T08:14:04.000Z,app1.contoso.example,EX16MBX01,RECEIVE,<m3@x>",
    ]
    source = make_source().feed(lines)
    # The second file has not named its writer in full yet: its row waits.
    assert [(g.template.logged_by, g.message_keys) for g in source.out.groups] == [
        ("ex16mbx01.contoso.example", ["<m0@x>", "<m1@x>", "<m2@x>"])]
    assert [(row.writer, row.time_ms, row.line) for row in source.state.parser.held.rows] == [
        ("ex16mbx01", epoch_ms(datetime(2026, 2, 11, 8, 14, 4, tzinfo=UTC)), 10)]
    # Only the second file's names are remembered: a new #Software line starts afresh.
    assert source.state.hosts == {"app1": "app1.contoso.example"}
    source.out.groups.clear()
    source.finish()
    assert [(g.template.logged_by, g.message_keys) for g in source.out.groups] == [("ex16mbx01", ["<m3@x>"])]
    assert source.state.parser.held is None


F27 = ",".join(F30.split(",")[:27])
# Exchange 2013 names itself short in mailbox rows (STOREDRIVER), in full in SMTP rows.
MAILBOX_2013 = (
    '2026-01-20T07:12:45.301Z,fe80::5d2c:11a8:6e03:44b1%13,EX13MBX02,fe80::5d2c:11a8:6e03:44b1%13,EX13MBX02,'
    '"MDB:4c9e1e10-6f40-4a77-9c1f-0c2d1e7a9b11, Mailbox:7d5a2c51-2e0b-43e4-a9c8-5d4f2c8b1e70, Event:1836, '
    'MessageClass:IPM.Note, CreationTime:2026-01-20T07:12:44.912Z, ClientType:OWA",,STOREDRIVER,RECEIVE,9917,'
    '<b91c@EX13MBX02.tailspin.example>,2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a,jo@example.net,,23041,1,,,'
    '"Re: ""Quote"" for 2026, v2",lee@tailspin.example,lee@tailspin.example,04I:,Originating,,,,'
)
SMTP_2013 = (
    '2026-01-20T07:12:46.055Z,198.51.100.90,EX13MBX02.tailspin.example,203.0.113.45,mx.partner.example,'
    '"08D2F1E0A1B2C3D4;250 2.6.0 <b91c@EX13MBX02.tailspin.example> [InternalId=9917, '
    'Hostname=EX13MBX02.tailspin.example] Queued mail for delivery",Internet,SMTP,SEND,9917,'
    '<b91c@EX13MBX02.tailspin.example>,2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a,jo@example.net,'
    '250 2.6.0 Queued mail for delivery,23041,1,,,"Re: ""Quote"" for 2026, v2",lee@tailspin.example,'
    'lee@tailspin.example,,Originating,,,,'
)
EX13 = "ex13mbx02.tailspin.example"


def mailbox_row(at: str, message: str) -> str:
    return MAILBOX_2013.replace("2026-01-20T07:12:45.301Z", at, 1).replace("<b91c@", f"<{message}@")


def smtp_row(at: str, message: str) -> str:
    return SMTP_2013.replace("2026-01-20T07:12:46.055Z", at, 1).replace("<b91c@", f"<{message}@")


def feed_batch(source, lines, until=None, packed=False, max_held_bytes=None):
    """One batch as the stream reads it (`until`: as `evaluate --at` does; `packed`: the lines as
    one packed record), the state stored as JSON before and after, as the stream's table stores it."""

    if packed:
        data = "".join(line.rstrip("\r") + "\r\n" for line in lines).encode()
        run = LineRun.packed(source.name, data, source.lines + 1, None, None)
    else:
        run = LineRun.of_lines(source.name, lines, [SourcePosition(source.name, source.lines + i)
                                                    for i in range(1, len(lines) + 1)], None)
    source.lines += len(lines)
    rows = TrackingRows(epoch_ms(until) if until else None, max_held_bytes)
    state = SourceState.from_json(orjson.loads(orjson.dumps(source.state.to_json()))) if source.state else None
    state = dispatch.parse_run(state, run, source.out, source.open_messages, rows)
    rows.flush(source.out)
    source.state = SourceState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    return source


def servers(source):
    """(writer, message) per message, sorted."""
    return sorted((g.template.logged_by, key) for g in source.out.groups for key in g.message_keys)


def test_the_sample_names_its_writer_once_by_its_fqdn(samples, make_source):
    """The file's first row is a mailbox row naming EX13MBX02; the SMTP row after it names it in full."""
    data = (samples / "msgtrk" / "MSGTRK2026012001-1.LOG").read_bytes()
    for source in (feed_packed(make_source, "f.log", data), make_source("f.log").feed(data.decode().splitlines())):
        source.finish()
        assert sorted({g.template.logged_by for g in source.out.groups}) == ["ex07hub01.wingtip.example", EX13]
        assert sum(g.count for g in source.out.groups if g.template.logged_by == EX13) == 3


def test_rows_wait_in_the_state_for_a_later_batch_that_names_their_writer_in_full(make_source):
    first = header("15.00.1104.000", F27) + [mailbox_row("2026-01-20T07:12:45.301Z", "a")]
    source = feed_batch(make_source("f.log"), first)
    assert source.out.groups == [] and source.out.errors == []
    [held] = source.state.parser.held.rows
    assert (held.writer, held.time_ms, held.line) == (
        "ex13mbx02", epoch_ms(datetime(2026, 1, 20, 7, 12, 45, 301000, tzinfo=UTC)), 6)
    feed_batch(source, [smtp_row("2026-01-20T07:12:46.055Z", "a")])
    assert servers(source) == [(EX13, "<a@EX13MBX02.tailspin.example>")] * 2
    assert source.state.parser.held is None and source.out.errors == []


def test_as_of_a_time_before_the_fqdn_the_rows_before_it_still_take_it(make_source):
    """`evaluate --at` leaves out the rows after its time; the names they teach still count."""
    at = datetime(2026, 1, 20, 7, 12, 46, tzinfo=UTC)
    first = header("15.00.1104.000", F27) + [mailbox_row("2026-01-20T07:12:45.301Z", "a")]
    source = feed_batch(make_source("f.log"), first, at)
    feed_batch(source, [smtp_row("2026-01-20T07:12:46.055Z", "b")], at)
    assert servers(source) == [(EX13, "<a@EX13MBX02.tailspin.example>")]
    assert source.state.parser.held is None


def test_held_rows_go_as_they_are_when_a_new_file_starts_or_the_source_ends(make_source):
    first = header("15.00.1104.000", F27) + [mailbox_row("2026-01-20T07:12:45.301Z", "a")]
    second = header("15.00.1104.000", F27) + [mailbox_row("2026-01-21T07:00:00.000Z", "b"),
                                              smtp_row("2026-01-21T07:00:01.000Z", "c")]
    # The second file's FQDN is not the first file's: its rows went when the second file began.
    for batches in ([first + second], [first, second]):
        source = make_source("f.log")
        for lines in batches:
            feed_batch(source, lines)
        assert servers(source) == [("ex13mbx02", "<a@EX13MBX02.tailspin.example>"),
                                   (EX13, "<b@EX13MBX02.tailspin.example>"), (EX13, "<c@EX13MBX02.tailspin.example>")]
    source = feed_batch(make_source("f.log"), first)
    assert servers(source.finish()) == [("ex13mbx02", "<a@EX13MBX02.tailspin.example>")]
    assert source.state.parser.held is None


def test_held_rows_go_as_they_are_after_an_hour_of_rows(make_source):
    """A row more than MAX_HELD_MS newer lets the older held rows go; the FQDN after it takes the
    newer ones, however the rows are cut into batches."""
    other = smtp_row("2026-01-20T08:10:00.000Z", "d").replace(",EX13MBX02.tailspin.example,",
                                                              ",EX13MBX04.tailspin.example,")
    lines = [mailbox_row("2026-01-20T07:00:00.000Z", "a"), mailbox_row("2026-01-20T07:30:00.000Z", "b"), other,
             smtp_row("2026-01-20T08:11:00.000Z", "c")]
    results = []
    for cut in range(len(lines) + 1):  # also the overdue row and the FQDN in a batch of their own
        for packed in (False, True):
            source = feed_batch(make_source("f.log"), header("15.00.1104.000", F27) + lines[:cut], packed=packed)
            feed_batch(source, lines[cut:], packed=packed)
            results.append(servers(source))
    assert results == [results[0]] * len(results) and source.out.errors == []
    assert results[0] == [("ex13mbx02", "<a@EX13MBX02.tailspin.example>"), (EX13, "<b@EX13MBX02.tailspin.example>"),
                          (EX13, "<c@EX13MBX02.tailspin.example>"),
                          ("ex13mbx04.tailspin.example", "<d@EX13MBX02.tailspin.example>")]


def test_held_rows_past_the_size_bound_go_as_they_are_the_oldest_first(make_source):
    bound = 3 * len(MAILBOX_2013.encode())
    rows = [mailbox_row(f"2026-01-20T07:12:4{n}.000Z", f"m{n}") for n in range(4)]
    source = feed_batch(make_source("f.log"), header("15.00.1104.000", F27) + rows, max_held_bytes=bound)
    # Four rows outgrow three rows' worth: the oldest go, down to half the bound.
    assert [key.split("@")[0] for _, key in servers(source)] == ["<m0", "<m1", "<m2"]
    assert {server for server, _ in servers(source)} == {"ex13mbx02"}
    feed_batch(source, [smtp_row("2026-01-20T07:12:50.000Z", "m9")], max_held_bytes=bound)
    assert servers(source)[3:] == [(EX13, "<m3@EX13MBX02.tailspin.example>"), (EX13, "<m9@EX13MBX02.tailspin.example>")]


def test_a_row_naming_its_writer_short_and_in_full_is_one_server(make_source):
    """SMTP RECEIVE from the Front End proxy on the same box: client EX01.CORP.TEST, server EX01."""
    fields = "date-time,client-hostname,server-hostname,event-id,message-id"
    lines = ["#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039", f"#Fields: {fields}",
             "2026-02-10T08:14:02.000Z,EX01.CORP.TEST,EX01,RECEIVE,<m0@x>",
             "2026-02-10T08:14:03.000Z,EX01.CORP.TEST,mx.partner.example,SEND,<m1@x>"]
    [group] = make_source().feed(lines).out.groups
    assert (group.template.logged_by, group.message_keys) == ("ex01.corp.test", ["<m0@x>", "<m1@x>"])
