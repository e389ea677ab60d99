from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.lines import LineRun, Piece, cut_at_long_lines, long_line, packed_runs

DATA = "a,b\r\nÜber\r\nc".encode()


def test_a_packed_run_works_out_positions_from_its_bytes():
    run = LineRun.packed("/f.log", DATA, 10, 500, None, origin="record-7")
    assert run.lines == ["a,b\r", "Über\r", "c"]
    assert [run.position(i) for i in range(3)] == [
        SourcePosition("/f.log", 10, 500), SourcePosition("/f.log", 11, 505), SourcePosition("/f.log", 12, 512)]
    error = run.error(1, "bad", field="x")
    assert (error.raw, error.field, error.origin, str(error)) == (
        "Über", "x", "record-7", "/f.log:11 (byte 505): field x: bad")


def test_transcoded_bytes_give_no_offsets():
    assert LineRun.packed("/t.csv", b"x\ny\n", 1, None, None).position(1) == SourcePosition("/t.csv", 2)


def test_runs_that_follow_on_stay_packed_when_joined():
    first = LineRun.packed("/f.log", b"a\nb\n", 1, 0, None, origin="r1")
    second = LineRun.packed("/f.log", b"c\n", 3, 4, None, origin="r2")
    joined = LineRun.concatenated([first, second])
    assert joined.raw_bytes() == b"a\nb\nc\n" and joined.lines == ["a", "b", "c"]
    assert [joined.position(i) for i in range(3)] == [SourcePosition("/f.log", n, 2 * (n - 1)) for n in (1, 2, 3)]
    assert [joined.origin(i) for i in range(3)] == ["r1", "r1", "r2"]


def test_runs_with_a_gap_keep_every_line_s_own_position():
    first = LineRun.packed("/f.log", b"a\n", 1, 0, None, origin="r1")
    later = LineRun.of_lines("/f.log", ["z"], [SourcePosition("/f.log", 9, 80)], None, ["r9"])
    joined = LineRun.concatenated([first, later])
    assert joined.raw_bytes() is None
    assert [(joined.position(i), joined.origin(i)) for i in range(2)] == [
        (SourcePosition("/f.log", 1, 0), "r1"), (SourcePosition("/f.log", 9, 80), "r9")]


def test_a_line_longer_than_the_limit_is_found_where_it_starts_and_ends():
    limit = 4
    assert long_line(b"abcd\nabcd\nab", limit) is None  # a line of just the limit is not too long
    assert long_line(b"ab\nabcde\nab", limit) == (3, 8)
    assert long_line(b"ab\nab\nabcdefgh", limit) == (6, 14)  # the last one, without its line end
    assert long_line(b"abcde\nab\nabcdefg\n", limit, start=6) == (9, 16)
    # Many short lines and one long one far on: found all the same, window by window.
    data = b"a\n" * 1000 + b"x" * 5 + b"\n" + b"b\n" * 10
    assert long_line(data, limit) == (2000, 2005)


def test_bytes_are_cut_around_their_lines_too_long():
    data = b"a\nb\n" + b"x" * 9 + b"\nc\n" + b"y" * 7
    assert list(cut_at_long_lines(data, 4)) == [
        Piece(0, 4, 0, False), Piece(4, 13, 2, True), Piece(14, 16, 3, False), Piece(16, 23, 4, True)]
    assert list(cut_at_long_lines(b"ab\n", 4)) == [Piece(0, 3, 0, False)]


def test_a_packed_record_gives_its_lines_too_long_as_errors_at_their_position():
    data = b"a\n" + b"x" * 9 + b"\r\nb\nc"
    first, error, rest = packed_runs("/f.log", data, 10, 500, None, 8, origin="record-7")
    assert isinstance(first, LineRun) and isinstance(rest, LineRun)
    assert (first.lines, first.position(0), first.origin(0)) == (["a"], SourcePosition("/f.log", 10, 500), "record-7")
    assert error == ParseError(SourcePosition("/f.log", 11, 502),
                               "line of 10 bytes is longer than formats.max_line_bytes (8); skipped")
    assert (error.raw, error.origin) == ("", "record-7")
    assert (rest.lines, rest.position(1)) == (["b", "c"], SourcePosition("/f.log", 13, 515))
    # Without a line too long, the run holds the record's bytes themselves.
    record = b"a\nb\n"
    [run] = packed_runs("/f.log", record, 1, None, None, 8)
    assert isinstance(run, LineRun)
    assert run.raw_bytes() is record and run.lines == ["a", "b"] and run.position(1) == SourcePosition("/f.log", 2)
