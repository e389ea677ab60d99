"""A batch of raw records through RawBatch, with stand-in tables: what the ingest agent does
between reading a batch and sending what it produced."""
from collections.abc import Sequence
from dataclasses import replace

import orjson

from pipeline.contracts import packing
from pipeline.domain.config import FormatConfig, PolicyConfig
from pipeline.streaming.ingest import Origin, RawBatch

LOG = "/logs/MSGTRK_EX16.LOG"
HEADER = (b"#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.039\r\n"
          b"#Fields: date-time,client-hostname,server-hostname,event-id,message-id,total-bytes\r\n")


def row(n: int) -> bytes:
    return (f"2026-02-10T08:{n // 60:02d}:{n % 60:02d}.000Z,app1.contoso.example,EX16.contoso.example,RECEIVE,"
            f"<m{n}@x>,{100 + n}\r\n").encode()


def packed(event, data: bytes, first_line: int, first_offset: int, offset: int, partition: int = 1):
    return event(LOG.encode(), data, partition, offset, packing.headers(first_line, first_offset))


def run_batch(tables, events, formats=FormatConfig()):
    parser_states, open_messages = tables
    batch = RawBatch(parser_states, open_messages, PolicyConfig(), formats)
    for e in events:
        batch.add(e)
    batch.parse()
    return batch


def test_packed_records_fold_into_one_observation_and_the_state_is_written_once(table, event):
    tables = (table(), table())
    first = HEADER + row(0) + row(1)
    second = row(2) + b"not,a,row\r\n" + row(3)
    batch = run_batch(tables, [packed(event, first, 1, 0, offset=7), packed(event, second, 6, len(first), offset=8)])
    [observation] = batch.observations.observations()
    assert (observation.server, observation.build, observation.count) == ("ex16.contoso.example", "15.1.2507.39", 4)
    assert observation.message_keys == ["<m0@x>", "<m1@x>", "<m2@x>", "<m3@x>"]
    [error] = batch.errors
    assert (error.position.source, error.position.line, error.position.offset) == (LOG, 7, len(first) + len(row(2)))
    assert error.origin == Origin("mail.logs.raw", 1, 8) and error.raw == "not,a,row"
    batch.states.flush()
    assert tables[0].writes == [(1, LOG.encode())]
    state = orjson.loads(tables[0].partitions[1][LOG.encode()])
    assert state["read"] == [1, 8] and state["format"] == "msgtrk"


def test_records_already_applied_before_a_restart_are_skipped(table, event):
    tables = (table(), table())
    records = [packed(event, HEADER + row(0), 1, 0, offset=7), packed(event, row(1), 5, len(HEADER + row(0)), offset=8)]
    run_batch(tables, records).states.flush()
    # The same records again (offsets not committed before a crash), and a new one.
    again = run_batch(tables, records + [packed(event, row(2), 6, 0, offset=9)])
    [observation] = again.observations.observations()
    assert observation.message_keys == ["<m2@x>"]


def test_a_batch_that_leaves_the_state_as_it_was_writes_nothing(table, event):
    tables = (table(), table())
    run_batch(tables, [packed(event, HEADER + row(0), 1, 0, offset=7)]).states.flush()
    later = run_batch(tables, [packed(event, row(1), 5, len(HEADER + row(0)), offset=8)])
    later.states.flush()
    assert tables[0].writes == [(1, LOG.encode())]
    assert later.observations.observations()[0].message_keys == ["<m1@x>"]


def test_one_line_records_are_unwrapped_joined_and_keep_their_own_positions(table, event):
    lines = [HEADER.decode().splitlines()[i] for i in range(3)] + [
        row(0).decode().strip(), "broken,row", row(1).decode().strip()]
    records = [event(LOG.encode(), orjson.dumps({"message": line, "log": {"file": {"path": LOG}, "offset": 1000 + n}}),
                     partition=2, offset=n) for n, line in enumerate(lines)]
    records.append(event(LOG.encode(), b'{"message": "cut', partition=2, offset=6))
    batch = run_batch((table(), table()), records)
    [observation] = batch.observations.observations()
    assert observation.message_keys == ["<m0@x>", "<m1@x>"]
    cut, broken = batch.errors  # envelopes are read as records arrive, lines when the batch is parsed
    assert (str(broken), broken.origin.offset, broken.origin.raw) == (
        f"{LOG} (byte 1004): 2 values for the 6 columns of #Fields", 4, records[4].message.value)
    assert cut.reason.startswith("broken JSON envelope") and cut.origin.offset == 6


def test_host_names_learnt_from_tracking_log_rows_are_written(table, event):
    tables = (table(), table())
    run_batch(tables, [packed(event, HEADER + row(0), 1, 0, offset=7)]).states.flush()
    later = row(1).replace(b"app1.contoso.example", b"app9.contoso.example")
    run_batch(tables, [packed(event, later, 5, len(HEADER + row(0)), offset=8)]).states.flush()
    state = orjson.loads(tables[0].partitions[1][LOG.encode()])
    assert state["hosts"]["app9"] == "app9.contoso.example" and state["read"] == [1, 8]


def test_a_rejected_header_block_is_charged_to_the_record_that_ended_it(table, event):
    block = b"From a@b Mon Feb 16 11:20:31 2026\nReceived: from a by b\nSubject: x\n\n"
    record = event(b"/mail/in.mbox", block, 0, 41, packing.headers(1, 0))
    [error] = run_batch((table(), table()), [record]).errors
    assert (str(error), error.origin) == (
        "/mail/in.mbox:1 (byte 0): field Received: no dated Received header and no Date header",
        Origin("mail.logs.raw", 0, 41))


# A Postfix log cut while a message was being received: its queue-active line never came.
OPEN_MESSAGE = (
    b"Feb 16 11:20:32 mx1 postfix/smtpd[2012]: 4TqN1c2Vb8z1: client=mail19.fabrikam.example[198.51.100.29]\n"
    b"Feb 16 11:20:33 mx1 postfix/cleanup[2015]: 4TqN1c2Vb8z1: warning: header Received: "
    b"from EX19MBX03.fabrikam.example (198.51.100.23) by mail19.fabrikam.example (198.51.100.29) "
    b"with Microsoft SMTP Server id 15.2.1544.14 via Frontend Transport; Mon, 16 Feb 2026 11:20:31 +0000 "
    b"from mail19.fabrikam.example[198.51.100.29]; from=<kim@fabrikam.example> "
    b"to=<jo@example.net> proto=ESMTP helo=<mail19.fabrikam.example>\n"
)
LATER_MESSAGE = (
    b"Feb 16 %s mx2 postfix/smtpd[3012]: 5RqN1c2Vb8z2: client=relay.wingtip.example[203.0.113.9]\n"
    b"Feb 16 %s mx2 postfix/qmgr[1480]: 5RqN1c2Vb8z2: from=<a@wingtip.example>, size=100, nrcpt=1 (queue active)\n"
)


def idle_batch(tables, events, idle_ms=3_600_000):
    parser_states, open_messages = tables
    batch = RawBatch(parser_states, open_messages, PolicyConfig(trusted_receivers=("mx*.example.net",)),
                     source_idle_ms=idle_ms)
    for e in events:
        batch.add(e)
    batch.parse()
    batch.states.flush()
    batch.open_sources.flush()
    batch.open_messages.flush()
    return batch


def servers(batch):
    return sorted(o.server for o in batch.observations.observations())


def test_a_source_holding_a_message_ends_when_its_partition_moves_on_by_the_idle_time(table, event):
    tables = (table(), table())
    first = idle_batch(tables, [event(b"/logs/mx1/mail.log", OPEN_MESSAGE, 3, 10, packing.headers(1, 0))])
    assert servers(first) == []
    # Another source on the same partition, 59 minutes on: not yet.
    soon = LATER_MESSAGE % (b"12:19:33", b"12:19:33")
    assert servers(idle_batch(tables, [event(b"/logs/mx2/mail.log", soon, 3, 11, packing.headers(1, 0))])) == [
        "relay.wingtip.example"]
    # An hour after the held message's source was last stamped (its own newest time, 11:20:33).
    later = LATER_MESSAGE % (b"12:20:33", b"12:20:33")
    batch = idle_batch(tables, [event(b"/logs/mx2/mail.log", later, 3, 12, packing.headers(3, len(soon)))])
    assert servers(batch) == ["mail19.fabrikam.example", "relay.wingtip.example"]
    assert tables[1].partitions[3] == {}  # the open message is gone
    state = orjson.loads(tables[0].partitions[3][b"/logs/mx1/mail.log"])
    # Ended, it keeps the raw offset of its own last record: a replay of the later ones finds it ended.
    assert state["read"] == [3, 10] and state["parser"]["open"] == 0
    assert orjson.loads(tables[0].partitions[3][b"\0open-sources/3"])["sources"] == {}


def test_a_quiet_marker_ends_a_header_block_that_no_blank_line_closed(table, event):
    tables = (table(), table())
    block = (b"Received: from ex13cas01.tailspin.example (203.0.113.40) by mx1.example.net with ESMTPS; "
             b"Tue, 3 Mar 2026 09:12:01 +0000\nReceived: from EX13MBX02.tailspin.example (10.4.0.12) by "
             b"ex13cas01.tailspin.example (10.4.0.11) with Microsoft SMTP Server id 15.0.1497.2; "
             b"Tue, 3 Mar 2026 09:12:00 +0000\n"
             b"Message-ID: <q1@tailspin.example>\nDate: Tue, 3 Mar 2026 09:11:58 +0000")
    assert servers(idle_batch(tables, [event(b"/mail/pasted.txt", block, 0, 4, packing.headers(1, 0))])) == []
    # The marker names offset 3: the block's record came after it, so it has not ended.
    assert servers(idle_batch(tables, [event(b"", b"", 0, 5, packing.quiet_headers(3))])) == []
    batch = idle_batch(tables, [event(b"", b"", 0, 6, packing.quiet_headers(4))])
    [observation] = batch.observations.observations()
    assert (observation.server, observation.build) == ("ex13cas01.tailspin.example", "15.0.1497.2")
    assert batch.errors == []


def test_without_an_idle_time_a_source_holds_its_lines_until_more_come(table, event):
    tables = (table(), table())
    idle_batch(tables, [event(b"/logs/mx1/mail.log", OPEN_MESSAGE, 3, 10, packing.headers(1, 0))], idle_ms=0)
    batch = idle_batch(tables, [event(b"", b"", 3, 11, packing.quiet_headers(10))], idle_ms=0)
    assert servers(batch) == [] and len(tables[1].partitions[3]) == 1


def test_a_rejected_header_block_is_named_by_the_line_and_byte_it_starts_at(table, event):
    good = b"From a@b Mon Feb 16 11:20:31 2026\nReceived: from a by b; Mon, 16 Feb 2026 11:20:31 +0000\n\nbody\n"
    bad = b"From c@d Mon Feb 16 11:21:00 2026\nSubject: no trace\n\n"
    record = event(b"/mail/in.mbox", good + bad, 0, 42, packing.headers(1, 0))
    [error] = run_batch((table(), table()), [record]).errors
    assert (error.position.line, error.position.offset) == (5, len(good))


def repacked(event, raw_records, partition=2, offset=0):
    """The repacker's records for (key, value, headers, raw offset) on a raw partition, as events."""
    records = [packing.RawRecord(o, key, value, headers, 1_770_000_000_000) for key, value, headers, o in raw_records]
    return [event(b"", r.value, partition, offset + n, r.headers)
            for n, r in enumerate(packing.repack("mail.logs.raw", records))]


def one_line_records():
    lines = [HEADER.decode().splitlines()[i] for i in range(3)] + [
        row(0).decode().strip(), "broken,row", row(1).decode().strip()]
    # (key, value, headers, raw offset)
    records: list[tuple[bytes, bytes, Sequence[tuple[str, bytes]], int]] = [
        (LOG.encode(), orjson.dumps({"message": line, "log": {"file": {"path": LOG}, "offset": 1000 + n}}), (), n)
        for n, line in enumerate(lines)]
    other = b"/logs/MSGTRK_EX19.LOG"
    records += [(other, HEADER, packing.headers(1, 0), 6), (LOG.encode(), b'{"message": "cut', (), 7),
                (other, row(5), packing.headers(4, len(HEADER)), 8)]
    return records


def test_repacked_records_give_what_the_raw_records_give_one_by_one(table, event):
    records = one_line_records()
    one_by_one = run_batch((table(), table()), [event(key, value, 2, o, headers) for key, value, headers, o in records])
    tables = (table(), table())
    together = run_batch(tables, repacked(event, records, offset=40))
    [record] = repacked(event, records)
    # The envelopes' lines travel as one run (the repacker read the envelopes), the envelopes beside them.
    assert [s.lines for s in packing.repacked_segments(record.message.headers)[1] if s.unwrapped] == [6]
    assert together.observations.observations() == one_by_one.observations.observations()
    # The same errors, from the same raw records; an envelope's line names its envelope's offset and
    # carries its line (the envelope stays on mail.logs.raw).
    assert [str(e) for e in together.errors] == [str(e) for e in one_by_one.errors]
    assert ([replace(e.origin, raw=None) for e in together.errors]
            == [replace(e.origin, raw=None) for e in one_by_one.errors])
    [broken] = [e for e in together.errors if e.origin.offset == 4]
    assert broken.origin.raw == b"broken,row" and b'"message"' in one_by_one.errors[[
        e.origin.offset for e in one_by_one.errors].index(4)].origin.raw
    assert {e.origin.topic for e in together.errors} == {"mail.logs.raw"}
    together.states.flush()
    # A source's state keeps the raw offset of its last line (7 was a broken envelope), not the
    # repacked record's offset.
    assert orjson.loads(tables[0].partitions[2][LOG.encode()])["read"] == [2, 5]


def test_lines_repacked_again_after_a_repacker_restart_are_applied_once(table, event):
    records = one_line_records()
    tables = (table(), table())
    run_batch(tables, repacked(event, records[:4], offset=40)).states.flush()
    # The repacker died before it committed: the same raw records again, cut elsewhere, and more.
    again = run_batch(tables, repacked(event, records, offset=41))
    # <m0@x> (raw offset 3) was applied; <m1@x> (5) and the other file's <m5@x> (8) were not.
    [observation] = again.observations.observations()
    assert observation.message_keys == ["<m1@x>", "<m5@x>"]


def bare_line_records():
    """A tracking log sent by kcat: one bare line per record, keyed by its path (one line is bad)."""
    lines = [*HEADER.decode().splitlines(), row(0).decode().strip(), "broken,row", row(1).decode().strip(),
             row(2).decode().strip()]
    return [(LOG.encode(), line.encode(), (), n) for n, line in enumerate(lines)]


def test_bare_lines_repacked_into_one_run_give_what_they_give_one_by_one(table, event):
    records = bare_line_records()
    one_by_one = run_batch((table(), table()), [event(key, value, 2, o, headers) for key, value, headers, o in records])
    together = run_batch((table(), table()), repacked(event, records, offset=40))
    assert together.observations.observations() == one_by_one.observations.observations()
    [broken] = together.errors
    assert (str(broken), broken.origin) == (str(one_by_one.errors[0]), one_by_one.errors[0].origin)
    assert (broken.origin.offset, broken.origin.raw) == (4, b"broken,row")


def test_bare_lines_joined_again_after_a_repacker_restart_are_applied_once(table, event):
    records = bare_line_records()
    tables = (table(), table())
    first = run_batch(tables, repacked(event, records[:4], offset=40))
    first.states.flush()
    assert orjson.loads(tables[0].partitions[2][LOG.encode()])["read"] == [2, 3]
    # The repacker died before it committed: the same records again, in one segment from offset 0.
    again = run_batch(tables, repacked(event, records, offset=41))
    [observation] = again.observations.observations()
    assert observation.message_keys == ["<m1@x>", "<m2@x>"]
    assert [e.origin.offset for e in again.errors] == [4]


SHORT_LINES = FormatConfig(max_line_bytes=4096)
TOO_LONG = "line of 5000 bytes is longer than formats.max_line_bytes (4096); skipped"


def test_a_line_too_long_in_a_packed_record_is_a_dead_letter_at_its_position_and_not_parsed(table, event):
    before = HEADER + row(0)
    data = before + b"\xff" * 5000 + b"\n" + row(1)
    batch = run_batch((table(), table()), [packed(event, data, 1, 0, offset=7)], SHORT_LINES)
    [observation] = batch.observations.observations()
    assert observation.message_keys == ["<m0@x>", "<m1@x>"]
    [error] = batch.errors
    assert str(error) == f"{LOG}:5 (byte {len(before)}): {TOO_LONG}"
    # The dead letter names the raw record that holds the line, and does not carry it.
    assert (error.origin, error.raw) == (Origin("mail.logs.raw", 1, 7), "")


def long_bare_line_records():
    records = bare_line_records()
    return [*records[:4], (LOG.encode(), b"x" * 5000, (), 4), *[(k, v, h, o + 1) for k, v, h, o in records[4:]]]


def test_a_bare_line_too_long_is_a_dead_letter_whether_repacked_or_not(table, event):
    records = long_bare_line_records()
    one_by_one = run_batch((table(), table()), [event(key, value, 2, o, headers) for key, value, headers, o in records],
                           SHORT_LINES)
    together = run_batch((table(), table()), repacked(event, records, offset=40), SHORT_LINES)
    assert together.observations.observations() == one_by_one.observations.observations()
    assert [o.message_keys for o in together.observations.observations()] == [["<m0@x>", "<m1@x>", "<m2@x>"]]
    too_long, broken = together.errors
    assert [(str(e), e.origin) for e in together.errors] == [(str(e), e.origin) for e in one_by_one.errors]
    assert (str(too_long), too_long.origin) == (f"{LOG}: {TOO_LONG}", Origin("mail.logs.raw", 2, 4))
    assert broken.origin.offset == 5


def test_a_line_too_long_in_an_envelope_is_a_dead_letter_at_the_position_the_envelope_gave(table, event):
    envelope = orjson.dumps({"message": "y" * 5000, "log": {"file": {"path": LOG}, "offset": 4096}})
    records = [(b"filebeat", envelope, (), 9)]
    [error] = run_batch((table(), table()), repacked(event, records), SHORT_LINES).errors
    assert (str(error), error.origin) == (f"{LOG} (byte 4096): {TOO_LONG}", Origin("mail.logs.raw", 2, 9))
    # Read as it came, its envelope is not even read: the record is too long.
    [error] = run_batch((table(), table()), [event(b"filebeat", envelope, 2, 9)], SHORT_LINES).errors
    assert str(error) == (f"filebeat: record of {len(envelope)} bytes is longer than formats.max_line_bytes (4096); "
                          "skipped")


def test_the_rows_a_source_holds_for_its_writers_fqdn_stay_within_the_states_bound(table, event):
    """Rows that name their writer short wait in the source's state for its FQDN: no more row text
    than one changelog record may carry; past it the oldest go as they are."""
    from pipeline.streaming.state_bounds import HELD_ROWS_BYTES

    rows = b"".join(f"2026-02-10T08:{n // 120:02d}:{n % 120 // 2:02d}.{n % 2 * 500:03d}Z,app1.contoso.example,EX16,"
                    f"RECEIVE,<m{n}@x>,100\r\n".encode() for n in range(4000))
    assert len(rows) > HELD_ROWS_BYTES
    tables = (table(), table())
    batch = run_batch(tables, [packed(event, HEADER + rows, 1, 0, offset=7)])
    batch.states.flush()
    held = orjson.loads(tables[0].partitions[1][LOG.encode()])["parser"]["held"]["rows"]
    assert HELD_ROWS_BYTES // 4 < sum(len(text.encode()) for *_, text in held) <= HELD_ROWS_BYTES
    [gone] = batch.observations.observations()
    assert gone.server == "ex16" and gone.count + len(held) == 4000


# A row whose writer (EX16) is named short, and the value the version before typed parser states
# stored for LOG once a batch read it at offset 7 of partition 1: the row waits there.
SHORT_WRITER_ROW = b"2026-02-10T08:00:00.000Z,app1.contoso.example,EX16,RECEIVE,<m0@x>,100\r\n"
STORED_BEFORE = (
    b'{"format":"msgtrk","parser":{"version":"15.01.2507.039","fields":["date-time","client-hostname",'
    b'"server-hostname","event-id","message-id","total-bytes"],"refused":false,"held":{"layouts":[[["date-time",'
    b'"client-hostname","server-hostname","event-id","message-id","total-bytes"],"15.01.2507.039",false]],'
    b'"rows":[[0,"ex16",1770710400000,4,"2026-02-10T08:00:00.000Z,app1.contoso.example,EX16,RECEIVE,<m0@x>,100\\r"]]}},'
    b'"hosts":{"app1":"app1.contoso.example"},"read":[1,7]}')


def test_a_state_stored_before_parser_states_were_typed_is_written_and_read_as_it_was(table, event):
    first = packed(event, HEADER + SHORT_WRITER_ROW, 1, 0, offset=7)
    written = (table(), table())
    run_batch(written, [first]).states.flush()
    assert written[0].partitions[1][LOG.encode()] == STORED_BEFORE
    # The same record again (before a commit) is skipped; the next names EX16 in full, and the
    # waiting row goes under that name, as it would have before.
    stored = (table(), table())
    stored[0].partitions[1] = {LOG.encode(): STORED_BEFORE}
    later = run_batch(stored, [first, packed(event, row(1), 5, len(HEADER + SHORT_WRITER_ROW), offset=8)])
    [observation] = later.observations.observations()
    # (The row that waited is read after the batch's own.)
    assert (observation.server, observation.message_keys, later.errors) == (
        "ex16.contoso.example", ["<m1@x>", "<m0@x>"], [])
    later.states.flush()
    assert stored[0].partitions[1][LOG.encode()] == (
        b'{"format":"msgtrk","parser":{"version":"15.01.2507.039","fields":["date-time","client-hostname",'
        b'"server-hostname","event-id","message-id","total-bytes"],"refused":false},'
        b'"hosts":{"app1":"app1.contoso.example","ex16":"ex16.contoso.example"},"read":[1,8]}')
