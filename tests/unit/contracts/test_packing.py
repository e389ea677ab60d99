import orjson
from hypothesis import given, settings, strategies as st

from pipeline.contracts import packing
from pipeline.domain.parsers import envelope


def test_headers_name_the_first_line_and_its_byte_offset():
    assert packing.headers(41, 3400) == [("patchgate.first-line", b"41"), ("patchgate.first-offset", b"3400")]
    assert packing.packed_position(packing.headers(41, 3400)) == (41, 3400)


def test_transcoded_records_carry_no_offset():
    assert packing.headers(7, None) == [("patchgate.first-line", b"7")]
    assert packing.packed_position(packing.headers(7, None)) == (7, None)


def test_a_record_without_the_header_is_one_line():
    assert packing.packed_position(None) is None
    assert packing.packed_position([("trace-id", b"x")]) is None


raw_records = st.lists(
    st.one_of(
        # One line in a Filebeat or Vector envelope, of one of two files.
        st.builds(lambda key, line, path, offset, stamp: (key, orjson.dumps(
                      {"message": line, "log": {"file": {"path": path}, "offset": offset}}), None, stamp),
                  st.sampled_from([b"/var/log/mail.log", None]), st.text("ab ,{\n\u00e9", max_size=40),
                  st.sampled_from(["/var/log/mail.log", "/var/log/mail.log.1"]), st.integers(0, 10**6),
                  st.one_of(st.none(), st.integers(0, 2**41))),
        # One line from a shipper, keyed by its file or not keyed at all.
        st.builds(lambda key, value, stamp: (key, value, None, stamp),
                  st.sampled_from([b"/var/log/mail.log", b"D:\\Logs\\MSGTRK1.LOG", b"", None]),
                  st.one_of(st.binary(max_size=300), st.text("ab ,{\n\u00e9", max_size=40).map(str.encode)),
                  st.one_of(st.none(), st.integers(0, 2**41))),
        # A packed record of `patchgate ship`.
        st.builds(lambda value, line, offset, stamp: (b"/var/log/mail.log", value, packing.headers(line, offset),
                                                      stamp),
                  st.binary(min_size=1, max_size=3000), st.integers(1, 10**6),
                  st.one_of(st.none(), st.integers(0, 10**9)), st.integers(0, 2**41)),
        # A quiet marker an older worker wrote onto the raw topic.
        st.builds(lambda through: (None, None, packing.quiet_headers(through), None), st.integers(0, 10**6)),
    ),
    max_size=60,
)


def expanded(value: bytes, segments: list[packing.Segment]) -> list[tuple]:
    """Each raw record a repacked record holds: raw offset, key, value, packed position."""
    out = []
    for s in segments:
        if s.lines and s.unwrapped:
            # Lines out of envelopes: each with the line number and byte its envelope gave.
            lines = value[s.start:s.end].split(b"\n")
            assert lines.pop() == b"" and len(lines) == s.lines == len(s.unwrapped.places)
            out += [(s.raw_offset + n, s.key, line, (s.unwrapped.numbers[n], s.unwrapped.places[n]))
                    for n, line in enumerate(lines)]
        elif s.lines:
            lines = value[s.start:s.end].split(b"\n")
            assert lines.pop() == b"" and len(lines) == s.lines
            out += [(s.raw_offset + n, s.key, line, (None, None)) for n, line in enumerate(lines)]
        else:
            out.append((s.raw_offset, s.key, value[s.start:s.end], (s.first_line, s.first_offset)))
    return out


@settings(max_examples=200, deadline=None)
@given(raw_records, st.integers(0, 10**9), st.lists(st.integers(1, 3), min_size=60, max_size=60))
def test_repacked_records_give_back_every_raw_record_but_the_quiet_markers_in_order(records, first, steps):
    offsets = [first + sum(steps[:n]) for n in range(len(records))]
    raw = [packing.RawRecord(offset, key, value, headers, stamp)
           for offset, (key, value, headers, stamp) in zip(offsets, records, strict=True)]
    repacked = packing.repack("mail.logs.raw", raw)
    stamps = {r.offset: r.timestamp_ms for r in raw}
    found = []
    for record in repacked:
        assert len(record.value) <= packing.MAX_RECORD_BYTES or len(packing.repacked_segments(record.headers)[1]) == 1
        topic, segments = packing.repacked_segments(record.headers)
        assert topic == "mail.logs.raw"
        held = [stamps[offset] for offset, *_ in expanded(record.value, segments) if stamps[offset] is not None]
        assert record.timestamp_ms == max(held, default=None)
        found += expanded(record.value, segments)
    assert found == [expected(r) for r in raw if packing.quiet_through(r.headers) is None]


def expected(r: packing.RawRecord) -> tuple:
    """What the repacker forwards of a raw record: a JSON envelope's line, with the position it gave
    (the envelope stays on mail.logs.raw), or the record as it is."""
    key = (r.key or b"").decode("utf-8", "replace")
    value = r.value or b""
    position = packing.packed_position(r.headers)
    if position is None and not packing.is_bare_line(value) and (inside := envelope.one_line(value)) is not None:
        line, _, number, place = inside
        return r.offset, key, line, (number, place)
    return r.offset, key, value, position or (None, None)


def test_a_repacked_record_closes_at_the_record_size_and_a_bigger_record_goes_alone(monkeypatch):
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 10)
    raw = [packing.RawRecord(n, b"k", value, None, None) for n, value in enumerate([b"aaaa", b"bbbb", b"cccc",
                                                                                     b"d" * 12, b"ee"])]
    # Bare lines, each followed by the \n the repacker adds.
    assert [record.value for record in packing.repack("t", raw)] == [
        b"aaaa\nbbbb\n", b"cccc\n", b"d" * 12 + b"\n", b"ee\n"]


def test_a_record_that_is_not_repacked_has_no_segments():
    assert packing.repacked_segments(packing.headers(1, 0)) is None
    assert packing.repacked_segments(None) is None


def test_bare_lines_of_one_key_at_consecutive_offsets_become_one_segment():
    raw = [packing.RawRecord(n, key, value, None, None) for n, key, value in [
        (5, b"a", b"one"), (6, b"a", b"two"), (7, b"b", b"three"), (9, b"b", b"four"), (10, b"b", b'{"x": 1}')]]
    [record] = packing.repack("t", raw)
    _, segments = packing.repacked_segments(record.headers)
    assert [(s.key, s.raw_offset, s.lines) for s in segments] == [("a", 5, 2), ("b", 7, 1), ("b", 9, 1), ("b", 10, 0)]
    assert record.value == b'one\ntwo\nthree\nfour\n{"x": 1}'


def test_envelopes_of_one_key_and_file_at_consecutive_offsets_become_one_segment_with_their_lines():
    def event(path, line, offset):
        return orjson.dumps({"message": line, "log": {"file": {"path": path}, "offset": offset}})
    raw = [packing.RawRecord(n, key, value, None, None) for n, key, value in [
        (5, b"k", event("/a.log", "one", 0)), (6, b"k", event("/a.log", "two", 4)), (7, b"k", event("/b.log", "x", 0)),
        (8, b"k", b"bare"), (9, b"k", event("/b.log", "y", 2)), (11, b"k", event("/b.log", "z", 4))]]
    [record] = packing.repack("t", raw)
    _, segments = packing.repacked_segments(record.headers)
    assert [(s.key, s.raw_offset, s.lines, s.unwrapped and s.unwrapped.source) for s in segments] == [
        ("k", 5, 2, "/a.log"), ("k", 7, 1, "/b.log"), ("k", 8, 1, None), ("k", 9, 1, "/b.log"),
        ("k", 11, 1, "/b.log")]
    first = segments[0]
    assert first.unwrapped == packing.Unwrapped("/a.log", [None, None], [0, 4])
    assert record.value == b"one\ntwo\nx\nbare\ny\nz\n"
