"""Which table keys `patchgate repartition` moves, and where; what it refuses."""
from __future__ import annotations

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.contracts.topics import partition_for
from pipeline.domain.source_ends import OpenSources
from pipeline.streaming.ingest import open_sources_key
from pipeline.streaming.repartition import (
    Move,
    by_key,
    carried_open_sources,
    open_messages_route,
    parser_state_route,
    plan,
    refusal,
    spread_controls,
    stays,
)


def names(count: int) -> list[bytes]:
    return [f"/var/log/mx{n}/mail.log".encode() for n in range(count)]


def placed(keys: list[bytes], count: int, value: bytes = b"v") -> dict[int, dict[bytes, bytes]]:
    """A changelog whose keys sit where their records put them under `count` partitions."""
    changelog: dict[int, dict[bytes, bytes]] = {p: {} for p in range(count)}
    for key in keys:
        changelog[partition_for(key, count)][key] = value + key
    return changelog


def test_partition_for_is_the_producers_default_partitioner():
    place = DefaultPartitioner()
    for key in names(50):
        for count in (4, 8, 12):
            assert partition_for(key, count) == place(key, list(range(count)), list(range(count)))


def test_keys_move_to_where_their_records_go_under_the_new_count_with_their_value():
    keys = names(200)
    moves = plan(placed(keys, 4), 4, 8, by_key).moves
    moved = {move.key for move in moves}
    assert moved == {key for key in keys if partition_for(key, 8) != partition_for(key, 4)}
    assert 50 < len(moved) < 150  # growing 4 -> 8 moves about half
    for move in moves:
        assert (move.old, move.new) == (partition_for(move.key, 4), partition_for(move.key, 8))
        assert move.value == b"v" + move.key


def test_a_count_that_is_not_a_multiple_moves_keys_into_old_partitions_too():
    moves = plan(placed(names(200), 4, b""), 4, 6, by_key).moves
    assert {move.new for move in moves} & {0, 1, 2, 3}


def test_per_partition_keys_stay():
    changelog = placed(names(20), 4)
    for p in changelog:
        changelog[p][open_sources_key(p)] = b"{}"
    moved = {move.key for move in plan(changelog, 4, 8, by_key).moves}
    assert moved and not [key for key in moved if key.startswith(b"\0")]


def test_the_controls_in_force_stay_and_are_copied_into_each_new_partition():
    controls = {p: {b"controls": b'{"pauses": []}'} for p in range(4)}
    assert plan(controls, 4, 6, stays).moves == []
    assert spread_controls(controls, 6) == [Move(b"controls", 4, 4, b'{"pauses": []}'),
                                            Move(b"controls", 5, 5, b'{"pauses": []}')]
    assert spread_controls({p: {} for p in range(4)}, 6) == []


def test_a_key_not_where_its_name_puts_it_is_unplaced_and_left():
    key = names(1)[0]
    elsewhere = (partition_for(key, 4) + 1) % 4
    result = plan({elsewhere: {key: b"v"}}, 4, 8, by_key)
    assert result.moves == [] and result.unplaced == [(elsewhere, key)]


def test_a_source_unwrapped_from_an_envelope_follows_the_record_key_that_carried_it():
    source = b"/var/log/mail.log"
    # An envelope file whose partition changes, while the source's own name would put it elsewhere.
    envelope_file = next(name for name in (f"/srv/export/{n}.ndjson".encode() for n in range(100))
                         if partition_for(name, 4) != partition_for(name, 8) != partition_for(source, 8))
    old, new = partition_for(envelope_file, 4), partition_for(envelope_file, 8)
    route = parser_state_route({(old, source): envelope_file})
    state = plan({old: {source: b"state"}}, 4, 8, route)
    messages = plan({old: {source + b"\0Q123": b"open"}}, 4, 8, open_messages_route(route))
    assert state.moves == [Move(source, old, new, b"state")]
    assert messages.moves == [Move(source + b"\0Q123", old, new, b"open")]


def test_open_messages_follow_their_source_not_their_own_key():
    sources = names(40)
    changelog: dict[int, dict[bytes, bytes]] = {}
    for source in sources:
        changelog.setdefault(partition_for(source, 4), {})[source + b"\0" + b"QID" * 5] = b"m"
    moves = plan(changelog, 4, 8, open_messages_route(parser_state_route({}))).moves
    assert moves
    for move in moves:
        source = move.key.split(b"\0")[0]
        assert (move.old, move.new) == (partition_for(source, 4), partition_for(source, 8))


def open_sources(clock_ms, sources) -> bytes:
    return orjson.dumps(OpenSources(clock_ms, sources).to_json())


def test_a_moved_source_that_holds_lines_is_carried_to_its_new_partitions_open_sources():
    moving, staying = b"/var/log/a.log", b"/var/log/b.log"
    parser_states = {1: {open_sources_key(1): open_sources(5_000, {"/var/log/a.log": [4_000, 17],
                                                                  "/var/log/b.log": [4_500, 20]})},
                     3: {open_sources_key(3): open_sources(9_000, {})}}
    carried = carried_open_sources(parser_states, [Move(moving, 1, 5, b"s"), Move(staying + b"x", 3, 7, b"s")])
    values = {move.new: orjson.loads(move.value) for move in carried}
    assert all(move.key == open_sources_key(move.new) and move.old == move.new for move in carried)
    # b.log stays in partition 1; a.log ends in 5 as it would have in 1, or at 5's first quiet marker.
    assert values == {1: {"clock_ms": 5_000, "sources": {"/var/log/b.log": [4_500, 20]}},
                      5: {"clock_ms": 4_000, "sources": {"/var/log/a.log": [4_000, -1]}}}


def test_a_moved_source_that_holds_nothing_changes_no_open_sources():
    assert carried_open_sources({1: {open_sources_key(1): open_sources(5_000, {})}}, [Move(b"/a", 1, 5, b"s")]) == []


@pytest.mark.parametrize(("counts", "to", "busy", "lag", "says"), [
    ({}, 8, [], 0, "do not exist"),
    ({"raw": 4, "patchgate-parser-state-changelog": 8}, 8, [], 0, "differ in partition count"),
    ({"raw": 4}, 4, [], 0, "cannot shrink"),
    ({"raw": 8}, 4, [], 0, "cannot shrink"),
    ({"raw": 4}, 8, ["patchgate"], 0, "live members"),
    ({"raw": 4}, 8, [], 3, "3 messages are not consumed"),
])
def test_refusals(counts, to, busy, lag, says):
    reason = refusal(counts, to, busy, lag)
    assert reason is not None and says in reason and "\n" not in reason


def test_no_refusal_when_stopped_drained_and_growing():
    assert refusal({"raw": 4, "patchgate-server-state-changelog": 4}, 12, [], 0) is None
