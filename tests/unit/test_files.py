import bz2
import gzip
import io
import json
import lzma
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.evaluate import evaluate
from pipeline.files import Chunk, DamagedFile, LineReader, LongLine, chunks, expand, transcoded
from pipeline.settings import load_settings


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


class Reads(io.BytesIO):
    """A file that keeps the most bytes any one read gave: what a reader held of it at a time."""

    most = 0

    def read(self, size=-1, /):
        return self._kept(super().read(size))

    def readline(self, size=-1, /):
        return self._kept(super().readline(size))

    def _kept(self, data):
        self.most = max(self.most, len(data))
        return data


def test_a_line_longer_than_the_limit_is_skipped_unheld_and_said_where_it_was():
    data = b"a\n" + b"x" * 100 + b"\r\nb\n" + b"y" * 20 + b"\nc"
    handle = Reads(data)
    found = list(chunks(handle, chunk_bytes=8, max_line_bytes=10))
    assert found == [Chunk(b"a\n", 1, 0, 1), LongLine(2, 2, 101), Chunk(b"b\n", 3, 104, 1), LongLine(4, 106, 20),
                     Chunk(b"c", 5, 127, 1)]
    # Read a chunk, or the rest of a line up to one byte past the limit, at a time.
    assert handle.most <= 11
    assert str(found[1].error("/f.log", 10)) == (
        "/f.log:2 (byte 2): line of 101 bytes is longer than formats.max_line_bytes (10); skipped")


def test_a_line_too_long_that_ends_the_file_is_skipped_to_its_end():
    assert list(chunks(io.BytesIO(b"a\n" + b"\xff" * 50), chunk_bytes=16, max_line_bytes=10)) == [
        Chunk(b"a\n", 1, 0, 1), LongLine(2, 2, 50)]


def test_a_line_too_long_still_being_written_is_skipped_once_its_end_comes(tmp_path):
    log = tmp_path / "mail.log"
    log.write_bytes(b"first\n" + b"x" * 30)
    with log.open("rb") as handle:
        reader = LineReader(handle, 0, 0, max_line_bytes=10)
        assert reader.read(8, final=False) == Chunk(b"first\n", 1, 0, 1)
        assert reader.read(8, final=False) is None
        # Until its end is read, the position stays before it: a restart skips it again from its start.
        assert (reader.offset, reader.line, reader.skipped) == (6, 1, 30)
        with log.open("ab") as writer:
            writer.write(b"x" * 30 + b"\nnext\npart")
        assert reader.read(8, final=False) == LongLine(2, 6, 60)
        assert reader.read(8, final=False) == Chunk(b"next\n", 3, 67, 1)
        assert reader.read(8, final=False) is None
        assert (reader.offset, reader.line) == (72, 3)


def test_compressed_lines_too_long_are_skipped_without_offsets():
    text = b"a\n" + b"x" * 5000 + b"\nb\n" + b"y" * 3000 + b"\nc\n"
    found = list(chunks(io.BytesIO(gzip.compress(text)), chunk_bytes=1000, max_line_bytes=2000))
    assert found == [Chunk(b"a\n", 1, None, 1), LongLine(2, None, 5000), Chunk(b"b\n", 3, None, 1),
                     LongLine(4, None, 3000), Chunk(b"c\n", 5, None, 1)]


def test_a_utf16_export_with_a_line_too_long_is_cut_around_it():
    data = ("a\r\n" + "é" * 20 + "\r\nb\r\n").encode("utf-16")
    assert list(chunks(io.BytesIO(data), max_line_bytes=30)) == [
        Chunk(b"a\n", 1, None, 1), LongLine(2, None, 40), Chunk(b"b\n", 3, None, 1)]


def test_utf16_exports_are_decoded_whole_without_offsets():
    data = '"date_time_utc","client_ip"\r\n"2026-02-10T08:14:03Z","192.0.2.1"\r\n'.encode("utf-16")
    [chunk] = list(chunks(io.BytesIO(data)))
    assert [chunk] == transcoded(data)
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


ROTATED = Path(__file__).resolve().parents[1] / "samples" / "rotated"
COMPRESSORS = {"gzip": lambda data: gzip.compress(data, mtime=0), "bzip2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_compressed_files_are_read_decompressed_in_chunks_without_offsets(kind):
    text = gzip.decompress((ROTATED / "mail.log.1.gz").read_bytes())
    # No line is too long: the chunks hold every byte.
    found = [c for c in chunks(io.BytesIO(COMPRESSORS[kind](text)), chunk_bytes=1000) if isinstance(c, Chunk)]
    assert b"".join(c.data for c in found) == text
    assert len(found) > 1 and {c.first_offset for c in found} == {None}
    assert [c.first_line for c in found] == [1 + sum(c.lines for c in found[:i]) for i in range(len(found))]
    assert sum(c.lines for c in found) == text.count(b"\n")


def test_a_utf16_export_inside_gzip_is_transcoded():
    data = '"date_time_utc","client_ip"\r\n"2026-02-10T08:14:03Z","192.0.2.1"\r\n'.encode("utf-16")
    [chunk] = list(chunks(io.BytesIO(gzip.compress(data))))
    assert [chunk] == transcoded(data)


def test_a_cut_compressed_file_gives_the_lines_before_the_cut_then_says_so():
    # A longer log (the sample's lines again and again, each with another pid), cut half way.
    lines = gzip.decompress((ROTATED / "mail.log.1.gz").read_bytes()).splitlines(keepends=True) * 30
    text = b"".join(line.replace(b"[", b"[%d" % n, 1) for n, line in enumerate(lines))
    whole = gzip.compress(text, mtime=0)
    cut = whole[:len(whole) // 2]
    read = []
    with pytest.raises(DamagedFile, match="the gzip data is damaged or cut short"):
        for chunk in chunks(io.BytesIO(cut), chunk_bytes=4096):
            read.append(chunk.data)  # noqa: PERF401 - what came before the damage is checked
    assert len(read) > 3 and text.startswith(b"".join(read)) and b"".join(read).endswith(b"\n")


def test_text_that_happens_to_start_like_bzip2_is_text():
    [chunk] = list(chunks(io.BytesIO(b"BZh: not a magic number\n")))
    assert (chunk.data, chunk.first_offset) == (b"BZh: not a magic number\n", 0)


def test_evaluate_finds_the_same_servers_in_rotated_logs_as_in_their_text(tmp_path):
    rotated, plain = tmp_path / "rotated", tmp_path / "plain"
    shutil.copytree(ROTATED, rotated)
    plain.mkdir()
    (plain / "mail.log.1").write_bytes(gzip.decompress((ROTATED / "mail.log.1.gz").read_bytes()))
    (plain / "mainlog.0").write_bytes(bz2.decompress((ROTATED / "mainlog.0.bz2").read_bytes()))
    # BSD syslog lines take their year from the file's date.
    dated = datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    for path in [*plain.iterdir(), *rotated.iterdir()]:
        os.utime(path, (dated, dated))
    settings = load_settings(ROTATED.parents[1] / "samples.toml", environ={})

    def run(folder):
        out, errors = io.StringIO(), io.StringIO()
        code = evaluate(settings, [str(folder)], None, out, errors)
        return code, out.getvalue(), errors.getvalue()

    code, out, errors = run(rotated)
    assert (code, out) == run(plain)[:2]
    servers = [json.loads(line)["server"] for line in out.splitlines()]
    assert servers == ["mail.graphicdesigninstitute.example", "mail.lucernepublishing.example",
                       "smtp.relecloud.example", "smtp2.woodgrove.example"]
    # Lines of decompressed data have numbers but no byte offsets.
    assert errors == (f"{rotated / 'mainlog.0.bz2'}:9: field timestamp: no Exim time stamp (YYYY-MM-DD HH:MM:SS) "
                      "at the start\n")
