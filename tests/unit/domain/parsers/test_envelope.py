import json
from datetime import UTC, datetime

from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.parsers.envelope import one_line, unwrap, unwrap_run


def test_patchgate_ship_envelope():
    raw = json.dumps({"message": "#Fields: a,b", "file": "/logs/MSGTRK1.LOG", "line": 5, "offset": 120}).encode()
    assert unwrap(raw, SourcePosition("key")) == ("#Fields: a,b", SourcePosition("/logs/MSGTRK1.LOG", 5, 120))


def test_filebeat_envelope():
    raw = json.dumps({"@timestamp": "2026-02-10T08:14:04Z", "message": "x,y",
                      "log": {"offset": 4096, "file": {"path": "D:/Logs/MSGTRK2.LOG"}}}).encode()
    assert unwrap(raw, SourcePosition("key")) == ("x,y", SourcePosition("D:/Logs/MSGTRK2.LOG", None, 4096))


def test_fluent_bit_and_vector_envelopes():
    assert unwrap(b'{"log": "x", "file": "/a", "offset": 7}', SourcePosition("k")) == (
        "x", SourcePosition("/a", None, 7))
    assert unwrap(b'{"message": "x", "file": "/b", "host": "mx1"}', SourcePosition("k")) == ("x", SourcePosition("/b"))


def test_bare_lines_keep_the_position_of_the_record():
    where = SourcePosition("mx1:/var/log/mail.log", 12, 900)
    assert unwrap(b"Mar  5 10:26:02 mx1 postfix/smtpd[2012]: x", where) == (
        "Mar  5 10:26:02 mx1 postfix/smtpd[2012]: x", where)
    assert unwrap('{"message": "x"}', where) == ("x", where)


def test_broken_envelopes_are_errors():
    where = SourcePosition("k")
    assert isinstance(unwrap(b'{"message": "x"', where), ParseError)
    assert unwrap(b'{"file": "/a"}', where).field == "message"
    assert unwrap(b"\xff\xfe\x00x", where).reason == "not UTF-8 at byte 0"
    assert unwrap(b'{"message": {"text": "x"}}', where).field == "message"


def test_nested_envelopes_are_unwrapped():
    inner = json.dumps({"message": "x,y", "log": {"offset": 64, "file": {"path": "D:/MSGTRK.LOG"}}})
    outer = json.dumps({"message": inner, "file": "/ship/filebeat.ndjson", "line": 3, "offset": 400})
    shipped = SourcePosition("/ship/filebeat.ndjson", 3, 400)
    assert unwrap(outer, SourcePosition("key")) == ("x,y", SourcePosition("D:/MSGTRK.LOG", None, 64, via=shipped))
    # Read from a file of its own, the outer envelope's place leads the chain.
    unwrapped = unwrap(outer, SourcePosition("/backfill/ship.ndjson", 9, 880))
    assert not isinstance(unwrapped, ParseError)
    _, position = unwrapped
    assert str(position) == ("/backfill/ship.ndjson:9 (byte 880) -> /ship/filebeat.ndjson:3 (byte 400) -> "
                             "D:/MSGTRK.LOG (byte 64)")
    broken = json.dumps({"message": '{"message": "cut', "file": "/ship/filebeat.ndjson", "line": 11})
    error = unwrap(broken, SourcePosition("key"))
    assert error.position == SourcePosition("/ship/filebeat.ndjson", 11) and "broken JSON" in error.reason


def test_a_run_of_shipper_output_is_split_by_the_sources_it_names():
    from pipeline.domain.lines import LineRun

    lines = [
        json.dumps({"message": "x1", "log": {"file": {"path": "/a"}, "offset": 0}}),
        json.dumps({"message": "x2", "log": {"file": {"path": "/a"}, "offset": 3}}),
        json.dumps({"log": "y1", "file": "/b", "offset": 0}),
        '{"message": "cut',
        "a bare line",
    ]
    data = ("\n".join(lines) + "\n").encode()
    a, b, error, bare = unwrap_run(LineRun.packed("/ship/out.ndjson", data, 1, 0, None, origin="rec"))
    assert isinstance(a, LineRun) and isinstance(b, LineRun) and isinstance(bare, LineRun)
    shipped = SourcePosition("/ship/out.ndjson", 1, 0), SourcePosition("/ship/out.ndjson", 2, len(lines[0]) + 1)
    assert (a.source, a.lines, [a.position(i) for i in range(2)]) == (
        "/a", ["x1", "x2"], [SourcePosition("/a", None, 0, shipped[0]), SourcePosition("/a", None, 3, shipped[1])])
    assert (b.source, b.lines, b.origin(0)) == ("/b", ["y1"], "rec")
    assert isinstance(error, ParseError) and error.position.line == 4 and error.origin == "rec"
    assert (bare.source, bare.lines, bare.position(0).line) == ("/ship/out.ndjson", ["a bare line"], 5)


def test_a_run_without_envelopes_comes_back_as_it_is():
    from pipeline.domain.lines import LineRun

    run = LineRun.packed("/f.log", b"#Software: x\n2026,1,{2}\n", 1, 0, None)
    assert unwrap_run(run) == [run]


def test_a_record_that_is_not_a_place_in_a_file_adds_nothing_to_the_position():
    # The stream's one-line records (Filebeat, Fluent Bit, Vector) fall back on the record key alone.
    assert unwrap(b'{"log": "x", "file": "/a", "offset": 7}', SourcePosition("mx2")) == (
        "x", SourcePosition("/a", None, 7))


class _Collected:
    def __init__(self):
        self.traces, self.errors = [], []

    def trace(self, trace):
        self.traces.append(trace)

    def group(self, group):
        self.traces.append(group.template)

    def error(self, error):
        self.errors.append(error)


def test_an_error_in_a_shipped_line_names_the_envelope_and_the_line_inside(samples):
    from pipeline.domain.lines import LineRun
    from pipeline.domain.parsers.dispatch import Sources
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows

    path = samples / "jsonl" / "filebeat-mx2.ndjson"
    data = path.read_bytes()
    out = _Collected()
    sources = Sources()
    sources.parse(LineRun.packed("jsonl/filebeat-mx2.ndjson", data, 1, 0, datetime(2026, 2, 28, tzinfo=UTC)),
                  out, TrackingRows())
    sources.finish(out)
    cut = data.split(b"\n")[6]
    [error] = out.errors
    assert str(error) == (f"jsonl/filebeat-mx2.ndjson:7 (byte {data.index(cut)}) -> /var/log/mail.log (byte 0): "
                          "field timestamp: no syslog time stamp at the start of the line")
    assert error.raw.startswith("18 mx2 postfix/smtpd[4182]: disconnect from")
    # The position's own fields are the inner line's, as dead letters and traces carry them.
    assert (error.position.source, error.position.line, error.position.offset) == ("/var/log/mail.log", None, 0)
    assert {t.client_hostname for t in out.traces} >= {"mail.adventure-works.example"}


def test_one_line_reads_what_unwrap_reads_and_declines_the_rest():
    """The stream's fast path for one-line records: the same line and position as `unwrap`, or
    None where `unwrap` has more to say (an error, a line break, an envelope inside, no file)."""
    record = SourcePosition("/var/log/mail.log")
    taken = [
        {"message": "postfix/smtpd[1]: connect", "log": {"file": {"path": "/var/log/mail.log"}, "offset": 52}},
        {"log": "Mär  3 line", "file": "/var/log/maillog", "offset": 7},
        {"message": "a line", "file": "C:/logs/MSGTRK1.LOG", "line": 3, "offset": 99},
        {"message": "", "file": "/f", "offset": "not a number"},
    ]
    for document in taken:
        raw = json.dumps(document, ensure_ascii=False).encode()
        unwrapped = unwrap(raw, record)
        assert not isinstance(unwrapped, ParseError)
        line, position = unwrapped
        assert one_line(raw) == (line.encode(), position.source, position.line, position.offset)
    declined = [b'{"message": "cut', b'[1, 2]', b'{"message": 5, "file": "/f"}', b'{"message": "no file"}',
                b'{"message": "two\\nlines", "file": "/f"}', b'{"message": "{\\"message\\": \\"x\\"}", "file": "/f"}',
                b'{"message": "\\ud800", "file": "/f"}', b'{"message": "\xff", "file": "/f"}']
    assert [one_line(raw) for raw in declined] == [None] * len(declined)
