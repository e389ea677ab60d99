from pipeline.contracts import packing
from pipeline.edges.shipper import Checkpoint, OpenFile, Position


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
