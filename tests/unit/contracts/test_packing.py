from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts import packing


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
        # One line from a shipper, keyed by its file or not keyed at all.
        st.builds(lambda key, value, stamp: (key, value, None, stamp),
                  st.sampled_from([b"/var/log/mail.log", b"D:\\Logs\\MSGTRK1.LOG", b"", None]),
                  st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 2**41))),
        # A packed record of `patchgate ship`.
        st.builds(lambda value, line, offset, stamp: (b"/var/log/mail.log", value, packing.headers(line, offset), stamp),
                  st.binary(min_size=1, max_size=3000), st.integers(1, 10**6),
                  st.one_of(st.none(), st.integers(0, 10**9)), st.integers(0, 2**41)),
        # A quiet marker an older worker wrote onto the raw topic.
        st.builds(lambda through: (None, None, packing.quiet_headers(through), None), st.integers(0, 10**6)),
    ),
    max_size=60,
)


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
        held = [stamps[s.raw_offset] for s in segments if stamps[s.raw_offset] is not None]
        assert record.timestamp_ms == max(held, default=None)
        found += [(s.raw_offset, s.key, record.value[s.start:s.end], (s.first_line, s.first_offset)) for s in segments]
    kept = [r for r in raw if packing.quiet_through(r.headers) is None]
    assert found == [(r.offset, (r.key or b"").decode("utf-8", "replace"), r.value or b"",
                      packing.packed_position(r.headers) or (None, None)) for r in kept]


def test_a_repacked_record_closes_at_the_record_size_and_a_bigger_record_goes_alone(monkeypatch):
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 10)
    raw = [packing.RawRecord(n, b"k", value, None, None) for n, value in enumerate([b"aaaa", b"bbbb", b"cccc",
                                                                                     b"d" * 12, b"ee"])]
    assert [record.value for record in packing.repack("t", raw)] == [b"aaaabbbb", b"cccc", b"d" * 12, b"ee"]


def test_a_record_that_is_not_repacked_has_no_segments():
    assert packing.repacked_segments(packing.headers(1, 0)) is None
    assert packing.repacked_segments(None) is None
