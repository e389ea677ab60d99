"""Records of a compacted topic folded per key: what compaction leaves of them, whenever it runs."""
import pytest

from pipeline.contracts.compacted import Compacted, is_tombstone


def test_only_a_null_value_is_a_tombstone():
    assert is_tombstone(None)
    # An empty value sets its key (the worker's quiet markers are empty records, for one).
    assert not is_tombstone(b"")


def test_the_newest_record_of_a_key_wins_and_a_tombstone_deletes_it():
    held = Compacted(bytes)
    assert held.add(b"a", b"1") and held.add(b"b", b"1") and held.add(b"a", b"2")
    assert held.add(b"a", None)
    assert held.by_key == {b"b": b"1"}
    # Deleting a key held by no record changes nothing; a record after the tombstone sets it again.
    assert not held.add(b"a", None)
    assert held.add(b"a", b"3")
    assert held.by_key == {b"b": b"1", b"a": b"3"}


def test_keep_says_what_a_key_holds_after_another_record_of_it():
    highest = Compacted(int, keep=max)
    assert highest.add(b"v", b"2")
    assert not highest.add(b"v", b"1"), "an older value read late changes nothing"
    assert highest.by_key == {b"v": 2}
    assert highest.add(b"v", None) and highest.by_key == {}
    # After a tombstone the key starts afresh, whatever it held before.
    assert highest.add(b"v", b"1") and highest.by_key == {b"v": 1}


def test_a_value_that_does_not_read_changes_nothing():
    held = Compacted(int)
    held.add(b"k", b"7")
    with pytest.raises(ValueError):
        held.add(b"k", b"seven")
    assert held.by_key == {b"k": 7}
