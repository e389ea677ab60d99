from pipeline.domain.events import SourcePosition
from pipeline.domain.lines import LineRun

DATA = "a,b\r\nÜber\r\nc".encode()


def test_a_packed_run_works_out_positions_from_its_bytes():
    run = LineRun.packed("/f.log", DATA, 10, 500, None, origin="record-7")
    assert run.lines == ["a,b\r", "Über\r", "c"]
    assert [run.position(i) for i in range(3)] == [
        SourcePosition("/f.log", 10, 500), SourcePosition("/f.log", 11, 505), SourcePosition("/f.log", 12, 512)]
    error = run.error(1, "bad", field="x")
    assert (error.raw, error.field, error.origin, str(error)) == ("Über", "x", "record-7", "/f.log:11 (byte 505): field x: bad")


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
