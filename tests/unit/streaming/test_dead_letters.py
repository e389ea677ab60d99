import pytest

from pipeline.streaming.dead_letters import DeadLetterLimit, DeadLetterLimitExceeded


def test_more_bad_records_in_a_row_than_allowed_exceed_the_limit_before_the_last_is_dead_lettered():
    limit = DeadLetterLimit("enforce", max_ratio=1.0, max_consecutive=3)
    for _ in range(3):
        limit.bad("mail.observations/0/1", "unknown writer schema fingerprint 00")
    with pytest.raises(DeadLetterLimitExceeded,
                       match=r"enforce: 4 records in a row .*max_consecutive = 3.*mail.observations/0/1"):
        limit.bad("mail.observations/0/1", "unknown writer schema fingerprint 00")


def test_a_good_record_resets_the_run_of_bad_ones():
    limit = DeadLetterLimit("enforce", max_ratio=1.0, max_consecutive=2)
    for _ in range(100):
        limit.bad("t/0/1", "bad")
        limit.bad("t/0/2", "bad")
        limit.good()


def test_a_share_of_bad_records_above_the_ratio_within_a_window_exceeds_the_limit():
    limit = DeadLetterLimit("observe", max_ratio=0.1, max_consecutive=1000)
    allowed = int(0.1 * DeadLetterLimit.RATIO_WINDOW)
    for n in range(allowed):
        limit.bad(f"t/0/{n}", "bad")
        limit.good()
    with pytest.raises(DeadLetterLimitExceeded, match=r"observe: 1001 of 2001 records.*max_ratio = 0.1 of 10000"):
        limit.bad("t/0/x", "bad")


def test_bad_records_spread_over_windows_stay_under_the_ratio():
    limit = DeadLetterLimit("observe", max_ratio=0.1, max_consecutive=1000)
    # 5% bad for three windows: never above 10% of one.
    for n in range(3 * DeadLetterLimit.RATIO_WINDOW):
        if n % 20 == 0:
            limit.bad(f"t/0/{n}", "bad")
        else:
            limit.good()
    assert limit.window_records == DeadLetterLimit.RATIO_WINDOW
