from datetime import UTC, date, datetime

import pytest

from pipeline.edges.control import command_from_request

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_a_request_becomes_a_command_with_an_id_its_time_and_who_sent_it():
    command = command_from_request({"action": "pause", "target": " Contoso.Example ", "days": 30,
                                    "start": "2026-12-01", "reason": " migration "}, AT, "ops@host")
    assert (command.action, command.target, command.days, command.start, command.reason) == (
        "pause", "contoso.example", 30, date(2026, 12, 1), "migration")
    assert (command.issued_at, command.issued_by, len(command.command_id)) == (AT, "ops@host", 32)
    assert command_from_request({"action": "resume", "target": "x"}, AT, "").command_id != command.command_id
    assert not command.all_servers
    assert command_from_request({"action": "exempt", "target": "*", "all_servers": True}, AT, "").all_servers


@pytest.mark.parametrize(("payload", "message"), [
    (["pause"], 'send {"action": ..., "target": ...}'),
    ({"action": "block", "target": "x"},
     "action must be one of pause, resume, exempt, unexempt, report-only, enforce, got 'block'"),
    ({"action": "pause", "target": ""},
     "target must name an org (pause, resume; report-only, enforce: also * for the whole site) "
     "or a server (exempt, unexempt)"),
    ({"action": "pause", "target": "x", "days": "30"}, "days must be a whole number of days, 1 or more, got '30'"),
    ({"action": "pause", "target": "x", "days": True}, "days must be a whole number of days, 1 or more, got True"),
    ({"action": "exempt", "target": "x", "until": "2027-02-30"},
     "until must be a date like 2026-03-01, got '2027-02-30'"),
    ({"action": "pause", "target": "x", "why": "y"}, "unknown fields: why"),
    ({"action": "exempt", "target": "*", "all_servers": "yes"}, "all_servers must be true or false, got 'yes'"),
])
def test_a_request_that_does_not_read_says_what(payload, message):
    with pytest.raises(ValueError) as error:
        command_from_request(payload, AT, "")
    assert str(error.value) == message
