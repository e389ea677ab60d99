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
