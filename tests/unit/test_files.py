import io

from pipeline.files import LineReader, chunks, expand, transcoded


def test_chunks_hold_whole_lines_with_their_first_number_and_byte_offset():
    data = "\ufeff#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.039\r\nÜ,x\r\nlast".encode()
    found = list(chunks(io.BytesIO(data), chunk_bytes=50))
    assert b"".join(c.data for c in found) == data
    # A chunk ends at the end of the line its limit falls in.
    assert [(c.first_line, c.first_offset, c.lines) for c in found] == [(1, 0, 2), (3, 67, 2)]
    assert all(c.data.endswith(b"\n") for c in found[:-1])


def test_a_line_longer_than_a_chunk_comes_whole():
    [chunk] = list(chunks(io.BytesIO(b"x" * 100 + b"\n"), chunk_bytes=10))
    assert (chunk.data, chunk.lines) == (b"x" * 100 + b"\n", 1)


def test_utf16_exports_are_decoded_whole_without_offsets():
    data = '"date_time_utc","client_ip"\r\n"2026-02-10T08:14:03Z","192.0.2.1"\r\n'.encode("utf-16")
    [chunk] = list(chunks(io.BytesIO(data)))
    assert chunk == transcoded(data)
    assert (chunk.data, chunk.first_offset, chunk.lines) == (
        b'"date_time_utc","client_ip"\n"2026-02-10T08:14:03Z","192.0.2.1"\n', None, 2)


def test_a_line_is_read_only_once_its_line_end_is_written(tmp_path):
    log = tmp_path / "mail.log"
    log.write_bytes(b"first\nsec")
    with log.open("rb") as handle:
        reader = LineReader(handle, 0, 0)
        first = reader.read(100, final=False)
        assert (first.data, first.first_line, first.first_offset) == (b"first\n", 1, 0)
        assert reader.read(100, final=False) is None
        with log.open("ab") as writer:
            writer.write(b"ond\r\nthird")
        second = reader.read(100, final=False)
        assert (second.data, second.first_line, second.first_offset) == (b"second\r\n", 2, 6)
        third = reader.read(100, final=True)
        assert (third.data, third.first_line, third.first_offset, third.lines) == (b"third", 3, 14, 1)
        assert (reader.offset, reader.line) == (19, 3)


def test_folders_expand_to_their_files_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.log").write_text("x")
    (tmp_path / "1.log").write_text("x")
    assert expand([str(tmp_path)]) == [tmp_path / "1.log", tmp_path / "b" / "2.log"]
