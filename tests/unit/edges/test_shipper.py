from pipeline.edges.shipper import expand, lines_with_positions


def test_lines_carry_number_and_byte_offset(tmp_path):
    log = tmp_path / "MSGTRK1.LOG"
    log.write_bytes("\ufeff#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.039\r\nÜ,x\r\n".encode())
    assert list(lines_with_positions(log)) == [
        (1, 0, "\ufeff#Software: Microsoft Exchange Server"),
        (2, 41, "#Version: 15.01.2507.039"),
        (3, 67, "Ü,x"),
    ]


def test_utf16_exports_are_decoded(tmp_path):
    export = tmp_path / "trace.csv"
    export.write_bytes('"date_time_utc","client_ip"\r\n"2026-02-10T08:14:03Z","192.0.2.1"\r\n'.encode("utf-16"))
    assert [line for _, _, line in lines_with_positions(export)] == [
        '"date_time_utc","client_ip"', '"2026-02-10T08:14:03Z","192.0.2.1"']


def test_folders_expand_to_their_files_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.log").write_text("x")
    (tmp_path / "1.log").write_text("x")
    assert expand([str(tmp_path)]) == [tmp_path / "1.log", tmp_path / "b" / "2.log"]


def test_a_line_is_read_only_once_its_newline_is_written(tmp_path):
    from pipeline.edges.shipper import OpenFile

    log = tmp_path / "mail.log"
    log.write_bytes(b"first\nsec")
    reader = OpenFile(log, None)
    assert reader.read(100, final=False) == [(1, 0, "first")]
    with log.open("ab") as handle:
        handle.write(b"ond\r\nthird")
    assert reader.read(100, final=False) == [(2, 6, "second")]
    assert reader.read(100, final=True) == [(3, 14, "third")]
    assert (reader.offset, reader.line) == (19, 3)


def test_reading_resumes_at_the_checkpoint_of_the_same_file_only(tmp_path):
    from pipeline.edges.shipper import OpenFile, Position

    log = tmp_path / "mail.log"
    log.write_bytes(b"a\nb\nc\n")
    inode = log.stat().st_ino
    assert OpenFile(log, Position(inode, 2, 1)).read(10, final=False) == [(2, 2, "b"), (3, 4, "c")]
    # Another inode (the file was replaced) or a shorter file (truncated): from the start.
    assert OpenFile(log, Position(inode + 1, 2, 1)).read(10, final=False)[0] == (1, 0, "a")
    assert OpenFile(log, Position(inode, 99, 9)).read(10, final=False)[0] == (1, 0, "a")


def test_checkpoint_round_trip(tmp_path):
    from pipeline.edges.shipper import Checkpoint, Position

    saved = Checkpoint(tmp_path / "cp.json")
    saved.positions["/var/log/mail.log"] = Position(12, 3400, 41)
    saved.save()
    assert Checkpoint(tmp_path / "cp.json").positions == {"/var/log/mail.log": Position(12, 3400, 41)}
    assert not (tmp_path / "cp.json.tmp").exists()
