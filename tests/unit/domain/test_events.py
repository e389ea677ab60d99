from pipeline.domain.events import SourcePosition


def test_a_position_kept_in_a_parser_state_comes_back_with_the_file_that_was_read():
    read = SourcePosition("/spool/shipped.jsonl", 12, 2048)
    position = SourcePosition("/var/log/mail.log", None, 5120, SourcePosition("/spool/vector.ndjson", None, None, read))
    restored = SourcePosition.restored("/var/log/mail.log", position.stored())
    assert restored == SourcePosition("/var/log/mail.log", None, 5120, read)
    assert SourcePosition.restored("a.log", SourcePosition("a.log", 3, 40).stored()) == SourcePosition("a.log", 3, 40)
