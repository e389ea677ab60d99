from collections import Counter

from pipeline.domain.windows import BLOCK, THROTTLE, action_at, block_reply, minutes_text, throttle_reply, window_offset


def test_windows_cover_exactly_the_configured_minutes_from_the_offset():
    server = "ex13mbx01.contoso.example"
    actions = [action_at(server, 30, 10, minute) for minute in range(60)]
    assert Counter(actions) == {BLOCK: 10, THROTTLE: 30, None: 20}
    offset = window_offset(server)
    assert actions[offset] == BLOCK
    assert actions[(offset + 9) % 60] == BLOCK
    assert actions[(offset + 10) % 60] == THROTTLE
    assert actions[(offset + 39) % 60] == THROTTLE
    assert actions[(offset + 40) % 60] is None


def test_offset_is_crc32_of_the_server_id_mod_60():
    # docs/enforcement.md publishes the offset (CRC-32 of the server id, mod 60) for MTAs and owners
    # to compute: pinned values, worked out with a bitwise CRC-32 apart from zlib.
    assert window_offset("contoso.example/ex01") == 21
    assert window_offset("ex13mbx01.contoso.example") == 14
    assert window_offset("fabrikam.example/mail19.fabrikam.example") == 23


def test_full_block_and_no_enforcement():
    assert all(action_at("a", 0, 60, m) == BLOCK for m in range(60))
    assert all(action_at("a", 0, 0, m) is None for m in range(60))


def test_reply_texts():
    assert throttle_reply(5) == \
        "450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr."
    assert block_reply(60) == "550 5.7.230 Connecting server version is out-of-date; connection blocked for 60 mins/hr."


def test_minutes_of_the_hour_wrap_past_the_hour():
    assert minutes_text(17, 5) == "minutes 17 to 21"
    assert minutes_text(58, 5) == "minutes 58 to 59 and 0 to 2"
    assert minutes_text(59, 30) == "minutes 59 and 0 to 28"
    assert (minutes_text(3, 1), minutes_text(9, 60)) == ("minute 3", "every minute")
