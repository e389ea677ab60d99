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
