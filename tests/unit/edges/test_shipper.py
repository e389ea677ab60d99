import bz2
import gzip
import os
import shutil
from pathlib import Path
from typing import ClassVar

import pytest

from pipeline.contracts import packing
from pipeline.domain.config import FormatConfig
from pipeline.edges import shipper
from pipeline.edges.shipper import Checkpoint, OpenFile, Position, ship
from pipeline.files import LongLine
from pipeline.settings import Settings


def test_a_file_is_read_in_records_of_whole_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 8)
    log = tmp_path / "mail.log"
    log.write_bytes(b"a\nbb\nccc\ndddd\nlast")
    opened = OpenFile(log, None)
    records = list(opened.read(final=False))
    assert b"".join(r.data for r in records) == b"a\nbb\nccc\ndddd\n"
    assert [(r.first_line, r.first_offset) for r in records] == [(1, 0), (4, 9)]
    assert (opened.offset, opened.line) == (14, 4)
    [last] = list(opened.read(final=True))
    assert (last.data, last.first_line, last.first_offset) == (b"last", 5, 14)


def test_reading_resumes_at_the_checkpoint_of_the_same_file_only(tmp_path):
    log = tmp_path / "mail.log"
    log.write_bytes(b"a\nb\nc\n")
    inode = log.stat().st_ino
    [resumed] = list(OpenFile(log, Position(inode, 2, 1)).read(final=False))
    assert (resumed.data, resumed.first_line, resumed.first_offset) == (b"b\nc\n", 2, 2)
    # Another inode (the file was replaced) or a shorter file (truncated): from the start.
    assert next(OpenFile(log, Position(inode + 1, 2, 1)).read(final=False)).first_line == 1
    assert next(OpenFile(log, Position(inode, 99, 9)).read(final=False)).first_line == 1


def test_a_utf16_export_is_sent_as_utf8_lines_without_offsets(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 40)
    export = tmp_path / "trace.csv"
    export.write_bytes('"date_time_utc","client_ip"\r\n"2026-02-10T08:14:03Z","192.0.2.1"\r\n'.encode("utf-16"))
    records = list(OpenFile(export, None).read(final=True))
    assert [(r.data, r.first_line, r.first_offset) for r in records] == [
        (b'"date_time_utc","client_ip"\n', 1, None), (b'"2026-02-10T08:14:03Z","192.0.2.1"\n', 2, None)]


def test_checkpoint_round_trip(tmp_path):
    saved = Checkpoint(tmp_path / "cp.json")
    saved.positions["/var/log/mail.log"] = Position(12, 3400, 41)
    saved.save()
    assert Checkpoint(tmp_path / "cp.json").positions == {"/var/log/mail.log": Position(12, 3400, 41)}
    assert not (tmp_path / "cp.json.tmp").exists()


ROTATED = Path(__file__).resolve().parents[2] / "samples" / "rotated"


def _rotated(tmp_path, name):
    path = tmp_path / name
    shutil.copyfile(ROTATED / name, path)
    return path


def test_a_compressed_file_is_shipped_whole_once_never_tailed(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 300)
    log = _rotated(tmp_path, "mainlog.0.bz2")
    text = bz2.decompress(log.read_bytes())
    opened = OpenFile(log, None)
    # Not final (following), yet the last line, which has no line end, comes: the file is complete.
    records = list(opened.read(final=False))
    assert b"".join(r.data for r in records) == text and not text.endswith(b"\n")
    assert [r.first_offset for r in records] == [None] * len(records) and len(records) > 1
    assert opened.position() == Position(log.stat().st_ino, len(text), 9, done=True, size=log.stat().st_size)
    assert list(opened.read(final=False)) == []
    # After a restart, a done file is not even decompressed.
    again = OpenFile(log, opened.position())
    assert (again.reader, list(again.read(final=True))) == (None, [])


def test_a_compressed_file_resumes_after_the_lines_acknowledged(tmp_path):
    log = _rotated(tmp_path, "mail.log.1.gz")
    lines = gzip.decompress(log.read_bytes()).splitlines(keepends=True)
    start = Position(log.stat().st_ino, sum(map(len, lines[:5])), 5)
    [rest] = list(OpenFile(log, start).read(final=True))
    assert (rest.data, rest.first_line, rest.first_offset) == (b"".join(lines[5:]), 6, None)


def test_a_compressed_file_still_being_written_is_read_on_once_it_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 4096)
    # A longer log than the sample (its lines again and again, each with another pid), as logrotate
    # writes it compressed: an empty file first, then half of it, then all.
    lines = gzip.decompress((ROTATED / "mail.log.1.gz").read_bytes()).splitlines(keepends=True) * 30
    text = b"".join(line.replace(b"[", b"[%d" % n, 1) for n, line in enumerate(lines))
    whole = gzip.compress(text, mtime=0)
    log = tmp_path / "mail.log.2.gz"
    log.write_bytes(b"")
    opened = OpenFile(log, None)
    assert list(opened.read(final=False)) == [] and not opened.compressed
    with log.open("r+b") as writer:
        writer.write(whole[:len(whole) // 2])
    first = b"".join(r.data for r in opened.read(final=False))
    assert first and text.startswith(first) and first.endswith(b"\n")
    assert (opened.done, "cut short" in str(opened.damage)) == (False, True)
    assert list(opened.read(final=False)) == []  # unchanged: not decompressed again
    with log.open("r+b") as writer:
        writer.write(whole)
    rest = b"".join(r.data for r in opened.read(final=False))
    assert first + rest == text and opened.done and opened.damage is None


class _Producer:
    """KafkaProducer's part the shipper uses, keeping what was sent: (key, value, (first line,
    first byte offset)). Every record is acknowledged at once."""

    sent: ClassVar[list] = []

    def __init__(self, **settings):
        pass

    def send(self, topic, key, value, headers, timestamp_ms):
        _Producer.sent.append((key, value, packing.packed_position(headers)))
        return self

    def add_errback(self, callback):
        pass

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def producer(monkeypatch):
    """The shipper's producer, and no wait between polls when following."""
    monkeypatch.setattr(shipper.kafka_clients, "KafkaProducer", _Producer)
    monkeypatch.setattr(_Producer, "sent", [])
    monkeypatch.setattr(shipper, "POLL_SECONDS", 0)
    return _Producer


def test_ship_sends_a_rotated_compressed_log_once_across_runs(tmp_path, producer):
    log = _rotated(tmp_path, "mail.log.1.gz")
    checkpoint = tmp_path / "checkpoint.json"
    assert ship(Settings(), [str(tmp_path / "mail.log.1.gz")], checkpoint=checkpoint) == 21
    assert b"".join(value for _, value, _ in producer.sent) == gzip.decompress(log.read_bytes())
    assert Checkpoint(checkpoint).positions[str(log.resolve())].done
    assert ship(Settings(), [str(log)], checkpoint=checkpoint) == 0


def test_a_compressed_log_renamed_on_by_logrotate_is_not_sent_again(tmp_path, producer):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "mail.log.2.gz"
    shutil.copyfile(ROTATED / "mail.log.1.gz", log)
    checkpoint = tmp_path / "checkpoint.json"
    assert ship(Settings(), [str(logs)], checkpoint=checkpoint) == 21
    log.rename(logs / "mail.log.3.gz")
    assert ship(Settings(), [str(logs)], checkpoint=checkpoint) == 0
    # A new file at the old name is new.
    shutil.copyfile(ROTATED / "mail.log.1.gz", logs / "mail.log.2.gz")
    assert ship(Settings(), [str(logs)], checkpoint=checkpoint) == 21


def follow(log, checkpoint, *between_polls, settings=None):
    """Ships `log` following it, without waiting between polls: each step changes the file after
    a poll (and its acknowledgement), and a last poll comes after the last step."""
    steps = iter(between_polls)

    def stop():
        step = next(steps, None)
        if step is not None:
            step()
        return step is None

    return ship(settings or Settings(), [str(log)], follow=True, checkpoint=checkpoint, stop=stop)


def truncated(log, data=b""):
    """A step: what `truncate -s 0`, or logrotate's copytruncate, does; then the writer's next lines."""
    def step():
        with log.open("r+b") as handle:
            handle.truncate(0)
        appended(log, data)()
    return step


def appended(log, data):
    """A step: the writer adds `data`."""
    def step():
        with log.open("ab") as handle:
            handle.write(data)
    return step


def test_a_truncated_file_is_read_again_from_the_start(tmp_path, producer):
    log = tmp_path / "mail.log"
    log.write_bytes(b"first 1\nfirst 2\n")
    checkpoint = tmp_path / "checkpoint.json"
    assert follow(log, checkpoint, truncated(log), appended(log, b"after\n")) == 3
    key = str(log.resolve()).encode()
    assert producer.sent == [(key, b"first 1\nfirst 2\n", (1, 0)), (key, b"after\n", (1, 0))]
    assert Checkpoint(checkpoint).positions[str(log.resolve())] == Position(log.stat().st_ino, 6, 1)


def test_a_file_truncated_and_written_again_between_two_polls_is_read_from_the_start(tmp_path, producer):
    log = tmp_path / "mail.log"
    log.write_bytes(b"before 1\nbefore 2\n")
    checkpoint = tmp_path / "checkpoint.json"
    # As with copytruncate: the writer goes on in the emptied file before the shipper looks again,
    # here up to one byte short of what was read before, the most the size can tell apart.
    steps = truncated(log, b"again 1\nagain 22\n"), appended(log, b"again 3\n")
    assert follow(log, checkpoint, *steps) == 5
    assert [(value, position) for _, value, position in producer.sent] == [
        (b"before 1\nbefore 2\n", (1, 0)), (b"again 1\nagain 22\n", (1, 0)), (b"again 3\n", (3, 17))]
    assert Checkpoint(checkpoint).positions[str(log.resolve())] == Position(log.stat().st_ino, 25, 3)


TOO_LONG = "line of 5000 bytes is longer than formats.max_line_bytes (4096); skipped"


def test_a_line_too_long_is_not_sent_and_the_checkpoint_moves_past_it(tmp_path, producer, capsys):
    log = tmp_path / "mail.log"
    log.write_bytes(b"before\n" + b"\xff" * 5000 + b"\nafter\n")
    checkpoint = tmp_path / "checkpoint.json"
    settings = Settings(formats=FormatConfig(max_line_bytes=4096))
    assert ship(settings, [str(log)], checkpoint=checkpoint) == 2
    key = str(log.resolve()).encode()
    assert producer.sent == [(key, b"before\n", (1, 0)), (key, b"after\n", (3, 5008))]
    assert capsys.readouterr().err == f"{log}:2 (byte 7): {TOO_LONG}\n"
    assert Checkpoint(checkpoint).positions[str(log.resolve())] == Position(log.stat().st_ino, 5014, 3)
    assert ship(settings, [str(log)], checkpoint=checkpoint) == 0 and capsys.readouterr().err == ""


def test_a_line_too_long_written_while_followed_is_said_once_when_it_ends(tmp_path, producer, capsys):
    log = tmp_path / "mail.log"
    log.write_bytes(b"first\n" + b"x" * 4200)  # too long already, not ended yet
    steps = appended(log, b"x" * 400), appended(log, b"x" * 400 + b"\nlast\n")
    settings = Settings(formats=FormatConfig(max_line_bytes=4096))
    assert follow(log, tmp_path / "checkpoint.json", *steps, settings=settings) == 2
    assert [value for _, value, _ in producer.sent] == [b"first\n", b"last\n"]
    assert capsys.readouterr().err == f"{log}:2 (byte 6): {TOO_LONG}\n"


def test_a_file_that_starts_with_a_line_too_long_is_not_read_again_from_its_start_at_each_look(tmp_path):
    log = tmp_path / "mail.log"
    log.write_bytes(b"x" * 4200)
    opened = OpenFile(log, None, max_line_bytes=4096)
    assert list(opened.read(final=False)) == []
    reader = opened.reader
    appended(log, b"x" * 800 + b"\nnext\n")()
    assert list(opened.read(final=False)) == [LongLine(1, 0, 5000), shipper.Chunk(b"next\n", 2, 5001, 1)]
    assert opened.reader is reader


def test_a_compressed_file_s_line_too_long_is_skipped_where_it_was(tmp_path):
    log = tmp_path / "mail.log.1.gz"
    log.write_bytes(gzip.compress(b"a\n" + b"x" * 5000 + b"\nb\n"))
    assert list(OpenFile(log, None, max_line_bytes=4096).read(final=False)) == [
        shipper.Chunk(b"a\n", 1, None, 1), LongLine(2, None, 5000), shipper.Chunk(b"b\n", 3, None, 1)]


def test_a_link_to_a_file_outside_the_paths_given_is_not_shipped_and_said_once(tmp_path, producer, capsys):
    logs, secret = tmp_path / "logs", tmp_path / "secret.key"
    logs.mkdir()
    secret.write_bytes(b"not for the log topic\n")
    (logs / "mail.log").write_bytes(b"line 1\n")
    (logs / "planted.log").symlink_to(secret)
    steps = appended(logs / "mail.log", b"line 2\n"), appended(secret, b"more\n")
    assert follow(logs, tmp_path / "checkpoint.json", *steps) == 2
    assert [value for _, value, _ in producer.sent] == [b"line 1\n", b"line 2\n"]
    assert capsys.readouterr().err == (f"{logs / 'planted.log'}: not shipped: it leads to {secret.resolve()}, "
                                       f"outside the paths given ({logs.resolve()})\n")


def test_a_link_to_a_file_under_the_paths_given_is_shipped_once_as_that_file(tmp_path, producer, capsys):
    logs, archive = tmp_path / "logs", tmp_path / "archive"
    logs.mkdir()
    archive.mkdir()
    (archive / "mail.log").write_bytes(b"line\n")
    (logs / "current.log").symlink_to(archive / "mail.log")
    assert ship(Settings(), [str(logs), str(archive)]) == 1
    assert producer.sent == [(str((archive / "mail.log").resolve()).encode(), b"line\n", (1, 0))]
    assert capsys.readouterr().err == ""


def test_a_link_put_in_place_of_a_file_once_it_was_looked_at_is_not_shipped(tmp_path, producer, monkeypatch, capsys):
    logs, secret = tmp_path / "logs", tmp_path / "secret.key"
    logs.mkdir()
    secret.write_bytes(b"not for the log topic\n")
    log = logs / "mail.log"
    log.write_bytes(b"line\n")
    opening = shipper.OpenFile

    def swapped_first(path, *args):
        # The race won: the file resolved inside the folder, and a link to elsewhere is opened.
        path.unlink()
        path.symlink_to(secret)
        return opening(path, *args)

    monkeypatch.setattr(shipper, "OpenFile", swapped_first)
    assert ship(Settings(), [str(logs)]) == 0 and producer.sent == []
    assert f"{log}: not shipped: it leads to {secret.resolve()}" in capsys.readouterr().err


def rotated_while_stopped(tmp_path, rotated_name):
    """mail[1].log shipped, then written on and renamed to `rotated_name` while the shipper was
    stopped, and a new mail[1].log begun: the lines sent on the next run."""
    log, checkpoint = tmp_path / "mail[1].log", tmp_path / "checkpoint.json"
    log.write_bytes(b"shipped\n")
    ship(Settings(), [str(log)], checkpoint=checkpoint)
    appended(log, b"written before the rotation\n")()
    log.rename(tmp_path / rotated_name)
    log.write_bytes(b"new file\n")
    _Producer.sent.clear()
    ship(Settings(), [str(log)], checkpoint=checkpoint)
    return [value for _, value, _ in _Producer.sent]


def test_a_file_named_with_a_bracket_is_finished_from_its_rotated_file(tmp_path, producer):
    assert rotated_while_stopped(tmp_path, "mail[1].log.1") == [b"written before the rotation\n", b"new file\n"]


def test_a_file_that_matches_a_file_name_only_as_a_pattern_is_not_its_rotated_file(tmp_path, producer):
    assert rotated_while_stopped(tmp_path, "mail1.log.1") == [b"new file\n"]


def test_a_file_whose_name_is_not_utf8_is_shipped_under_the_bytes_of_its_name(tmp_path, producer):
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = b"Mar  5 10:26:02 mx1 postfix/smtpd[2012]: connect from a[192.0.2.1]\n"
    for name in (b"a.log", b"mail\xff.log", b"z.log"):
        (logs / os.fsdecode(name)).write_bytes(lines)
    checkpoint = tmp_path / "checkpoint.json"
    assert ship(Settings(), [str(logs)], checkpoint=checkpoint) == 3
    assert sorted(key.rsplit(b"/", 1)[-1] for key, _, _ in producer.sent) == [b"a.log", b"mail\xff.log", b"z.log"]
    # The checkpoint holds it too: nothing is sent again.
    assert ship(Settings(), [str(logs)], checkpoint=checkpoint) == 0
