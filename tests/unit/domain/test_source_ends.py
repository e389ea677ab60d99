from pipeline.domain.source_ends import OpenSources

HOUR = 3_600_000


def test_a_source_ends_once_the_partition_clock_passed_its_stamp_by_the_idle_time():
    sources = OpenSources()
    sources.advance(10 * HOUR)
    sources.touched("/logs/mail.log", holds=True, offset=4)
    sources.advance(11 * HOUR - 1)
    assert sources.ended(HOUR) == []
    sources.advance(11 * HOUR)
    assert sources.ended(HOUR) == ["/logs/mail.log"]
    assert sources.sources == {}


def test_a_source_read_late_is_stamped_with_the_partition_clock_not_its_own_older_times():
    sources = OpenSources()
    sources.advance(100 * HOUR)  # live logs on the partition
    # A backfill of last month's log: its own lines are far behind, but its records keep coming.
    sources.touched("/backfill/mail.log.1", holds=True, offset=5)
    sources.advance(100 * HOUR + 10)
    assert sources.ended(HOUR) == []
    assert sources.sources["/backfill/mail.log.1"] == [100 * HOUR, 5]


def test_a_source_that_holds_nothing_is_forgotten():
    sources = OpenSources()
    sources.advance(HOUR)
    sources.touched("a", holds=True, offset=1)
    sources.touched("a", holds=False, offset=2)
    assert sources.sources == {}


def test_a_quiet_marker_ends_the_sources_whose_last_record_came_before_it():
    sources = OpenSources()
    sources.touched("early", holds=True, offset=3)  # no event time yet on the partition
    sources.advance(5 * HOUR)
    sources.touched("late", holds=True, offset=9)
    assert sources.ended(HOUR, quiet_through=8) == ["early"]
    assert list(sources.sources) == ["late"]
    assert sources.ended(HOUR, quiet_through=9) == ["late"]


def test_ended_sources_come_oldest_stamp_first_and_idle_zero_ends_nothing():
    sources = OpenSources()
    sources.advance(3 * HOUR)
    sources.touched("b", holds=True, offset=2)
    sources.advance(2 * HOUR)  # the clock never goes back
    assert sources.clock_ms == 3 * HOUR
    sources.sources["a"] = [HOUR, 1]
    sources.advance(10 * HOUR)
    assert sources.ended(0, quiet_through=100) == []
    assert sources.ended(HOUR) == ["a", "b"]


def test_open_sources_survive_the_table_as_json():
    sources = OpenSources()
    sources.advance(HOUR)
    sources.touched("a", holds=True, offset=7)
    assert OpenSources.from_json(sources.to_json()) == sources
    assert OpenSources.from_json(None) == OpenSources()
