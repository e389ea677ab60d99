"""Grow the pipeline's topics to more partitions without losing table state (`patchgate repartition`).

A Faust table keeps each key in the partition of the record that wrote it, and the records of a
key are placed by Kafka's default partitioner (murmur2 of the key, modulo the partition count).
Growing the topics changes where most keys' records arrive, so each table key whose partition
changes is written again to its new changelog partition, with a tombstone in its old one. The
next workers read the changelog of the partitions they take at recovery, from the offset their
local stores reached: they find every key where its records now arrive, and the tombstones remove
the old copies from the stores on disk.

Which record places a key: a server-state key is the server id, the key of mail.observations; a
parser-state key is a source, placed by the key of the mail.logs.raw records that carry it (the
file path, the source itself, except for lines unwrapped from an envelope file: the key of the
record named by the state's "read" offset tells); an open-messages key (source NUL queue id)
follows its source. Keys starting with NUL belong to their partition (its open sources) and
stay; a source that moves is carried from its old partition's open sources to its new
one's, so that it still ends when idle. The pauses and exemptions in force are in every partition
of controls-in-force: each new partition gets a copy. mail.control and its control-state table
keep their one partition.

Run it with every worker and sink stopped and the pipeline drained: records still unread in the
old partitions would be read after newer ones of the same key in the new partitions.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson
from kafka import TopicPartition
from kafka.admin import NewPartitions

from pipeline import kafka_admin as housekeeping, kafka_clients
from pipeline.contracts import topics
from pipeline.contracts.topics import partition_for
from pipeline.domain.source_ends import OpenSources
from pipeline.settings import Settings
from pipeline.streaming.ingest import StoredSource, open_sources_key

# The tables co-partitioned with the pipeline's topics (control-state keeps its one partition).
TABLES = (topics.PARSER_STATE_TABLE, topics.OPEN_MESSAGES_TABLE, topics.SERVER_STATE_TABLE,
          topics.CONTROLS_IN_FORCE_TABLE)

# A table's changelog read to its end: partition -> key -> latest value (deleted keys left out).
Changelog = dict[int, dict[bytes, bytes]]
# Where a key's records come from: (partition, key) -> the record key that places it, or None for
# a key that belongs to its partition.
Route = Callable[[int, bytes], bytes | None]


class Refused(Exception):
    """Why the topics cannot be grown now (one line)."""


@dataclass(frozen=True)
class Move:
    key: bytes
    old: int
    new: int
    value: bytes


@dataclass
class Plan:
    """What one table needs: keys to move, and keys whose partition is not their record key's (their
    records were placed otherwise: no key, another partitioner), which cannot be followed."""

    moves: list[Move] = field(default_factory=list)
    unplaced: list[tuple[int, bytes]] = field(default_factory=list)


def plan(changelog: Mapping[int, Mapping[bytes, bytes]], old_count: int, new_count: int, route: Route) -> Plan:
    """The moves that put each key of the table in the partition its records reach under `new_count`."""
    result = Plan()
    for partition, values in sorted(changelog.items()):
        for key, value in sorted(values.items()):
            placing = route(partition, key)
            if placing is None:
                continue
            if partition_for(placing, old_count) != partition:
                result.unplaced.append((partition, key))
                continue
            new = partition_for(placing, new_count)
            if new != partition:
                result.moves.append(Move(key, partition, new, value))
    return result


def by_key(partition: int, key: bytes) -> bytes | None:
    """Route of a table keyed by its record key (server-state): NUL keys stay."""
    return None if key.startswith(b"\0") else key


def parser_state_route(placed_by: Mapping[tuple[int, bytes], bytes]) -> Route:
    """Route of parser-state: a source is placed by its own name unless `placed_by` names the key of
    the raw record that carried it."""
    def route(partition: int, key: bytes) -> bytes | None:
        return None if key.startswith(b"\0") else placed_by.get((partition, key), key)
    return route


def open_messages_route(source_route: Route) -> Route:
    """Route of open-messages: a key (source NUL queue id) goes where its source goes."""
    def route(partition: int, key: bytes) -> bytes | None:
        source, _, _ = key.partition(b"\0")
        return source_route(partition, source)
    return route


def stays(partition: int, key: bytes) -> bytes | None:
    """Route of controls-in-force: its one key belongs to every partition."""
    return None


def spread_controls(controls: Mapping[int, Mapping[bytes, bytes]], new_count: int) -> list[Move]:
    """The controls in force, copied into each partition that does not have them yet."""
    held = next((values for _, values in sorted(controls.items()) if values), None)
    if held is None:
        return []
    return [Move(key, partition, partition, value) for partition in range(new_count)
            if not controls.get(partition) for key, value in held.items()]


def carried_open_sources(parser_states: Mapping[int, Mapping[bytes, bytes]], moves: Iterable[Move]) -> list[Move]:
    """The per-partition open-sources values that change when these parser-state moves happen, as
    Moves within their partition. A moved source that held something keeps its stamp in the
    partition it goes to, and offset -1, so the first quiet marker there ends it as well."""
    loaded: dict[int, OpenSources] = {}
    changed: set[int] = set()

    def open_sources(partition: int) -> OpenSources:
        if partition not in loaded:
            stored = parser_states.get(partition, {}).get(open_sources_key(partition))
            loaded[partition] = OpenSources.from_json(orjson.loads(stored) if stored else None)
        return loaded[partition]

    for move in moves:
        source = move.key.decode("utf-8", "replace")
        if source not in open_sources(move.old).sources:
            continue
        stamp, _ = open_sources(move.old).sources.pop(source)
        there = open_sources(move.new)
        there.sources[source] = [stamp, -1]
        # A partition's clock is set whenever one of its sources has a stamp (see OpenSources.ended).
        if there.clock_ms is None and stamp is not None:
            there.clock_ms = stamp
        changed |= {move.old, move.new}
    return [Move(open_sources_key(p), p, p, orjson.dumps(loaded[p].to_json())) for p in sorted(changed)]


def refusal(counts: Mapping[str, int], new_count: int, busy_groups: list[str], lag: int) -> str | None:
    """Why growing to `new_count` must not happen now, given each existing topic's partition count,
    the consumer groups with live members and the messages not yet consumed; None when it may."""
    if not counts:
        return "the pipeline's topics do not exist (patchgate topics creates them)"
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
        return f"the topics differ in partition count ({listed}): grow them by hand to one count first"
    current = next(iter(counts.values()))
    if new_count <= current:
        return f"the topics have {current} partitions already: --to must be more (partitions cannot shrink)"
    if busy_groups:
        return f"consumer group {', '.join(busy_groups)} has live members: stop every worker and sink first"
    if lag > 0:
        return (f"{lag} messages are not consumed yet: let the workers finish (patchgate wait), then stop "
                "them; records left in the old partitions would be read out of order")
    return None


def repartition(settings: Settings, new_count: int, leave_unplaced: bool = False) -> list[str]:
    """Grow every pipeline topic and table changelog to `new_count` partitions and move the table
    keys; returns what was done, one line each. Raises Refused before changing anything."""
    names = [spec.name for spec in topics.pipeline_topics(settings) if not spec.single]
    changelogs = {table: topics.changelog_topic(settings, table) for table in TABLES}
    client = kafka_clients.admin(settings, "patchgate-repartition")
    try:
        existing = {t["name"]: len(t["partitions"]) for t in client.describe_topics()}
        counts = {name: existing[name] for name in [*names, *changelogs.values()] if name in existing}
        groups = [settings.app_id, topics.sink_group(settings)]
        busy = [group for group, info in client.describe_groups(groups).items() if info["members"]]
        # The orders that matter are those the tables depend on: the raw lines, the traces and the
        # observations; what the sinks have left of decisions and enforcement is stored order-free.
        reason = refusal(counts, new_count, busy, housekeeping.lag(settings, housekeeping.PROCESSED) if counts else 0)
        if reason:
            raise Refused(reason)
        old_count = next(iter(counts.values()))
        tables = {table: housekeeping.read_compacted(settings, topic)
                  for table, topic in changelogs.items() if topic in existing}
        plans, open_sources = _plans(settings, tables, old_count, new_count)
        spread = spread_controls(tables.get(topics.CONTROLS_IN_FORCE_TABLE, {}), new_count)
        unplaced = [(table, p, key) for table, table_plan in plans.items() for p, key in table_plan.unplaced]
        if unplaced and not leave_unplaced:
            table, p, key = unplaced[0]
            raise Refused(
                f"{len(unplaced)} table keys are not in the partition their records' key gives (e.g. {table} "
                f"{key!r} in partition {p}): their records were placed by another partitioner or without a key, "
                "so where they go next is unknown; --leave-unplaced grows anyway and leaves them")
        client.create_partitions({name: NewPartitions(new_count) for name in counts})
    finally:
        client.close()
    _write(settings, {changelogs[table]: table_plan.moves for table, table_plan in plans.items()},
           [(changelogs[topics.PARSER_STATE_TABLE], move) for move in open_sources]
           + [(changelogs[topics.CONTROLS_IN_FORCE_TABLE], move) for move in spread])
    done = [f"grew {len(counts)} topics from {old_count} to {new_count} partitions: {', '.join(sorted(counts))}"]
    done += [f"{table}: moved {len(table_plan.moves)} of {sum(map(len, tables[table].values()))} keys"
             + (f", left {len(table_plan.unplaced)} unplaced" if table_plan.unplaced else "")
             for table, table_plan in plans.items()]
    if open_sources:
        done.append(f"parser-state: carried moved sources in the open sources of {len(open_sources)} partitions")
    if spread:
        done.append(f"controls-in-force: copied the pauses and exemptions in force into {len(spread)} partitions")
    done.append(f"start the workers and sinks with PATCHGATE_PARTITIONS={new_count}, and restart `patchgate mta` "
                "and any shipper still running so that they see the new partitions")
    return done


def _plans(settings: Settings, tables: dict[str, Changelog], old_count: int,
           new_count: int) -> tuple[dict[str, Plan], list[Move]]:
    parser_states = tables.get(topics.PARSER_STATE_TABLE, {})
    placed_by = raw_record_keys(settings, _not_placed_by_name(parser_states, old_count))
    source_route = parser_state_route(placed_by)
    routes = {topics.PARSER_STATE_TABLE: source_route,
              topics.OPEN_MESSAGES_TABLE: open_messages_route(source_route),
              topics.SERVER_STATE_TABLE: by_key,
              topics.CONTROLS_IN_FORCE_TABLE: stays}
    plans = {table: plan(changelog, old_count, new_count, routes[table]) for table, changelog in tables.items()}
    moved_sources = plans[topics.PARSER_STATE_TABLE].moves if parser_states else []
    return plans, carried_open_sources(parser_states, moved_sources)


def _not_placed_by_name(parser_states: Changelog, count: int) -> dict[tuple[int, bytes], tuple[int, int]]:
    """The sources not in the partition their name gives, with the raw record their state names as
    read last ([partition, offset])."""
    wanted = {}
    for partition, values in parser_states.items():
        for key, value in values.items():
            if key.startswith(b"\0") or partition_for(key, count) == partition:
                continue
            read = StoredSource.decode(value).read
            if read and read[0] == partition:
                wanted[(partition, key)] = read
    return wanted


def raw_record_keys(settings: Settings,
                    wanted: Mapping[tuple[int, bytes], tuple[int, int]]) -> dict[tuple[int, bytes], bytes]:
    """The keys of the mail.logs.raw records at the given positions (those still there and keyed)."""
    if not wanted:
        return {}
    topic = settings.topic(topics.RAW)
    consumer = kafka_clients.consumer(settings, max_partition_fetch_bytes=64 * 1024)
    try:
        found: dict[tuple[int, bytes], bytes] = {}
        for state_key, (partition, offset) in wanted.items():
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            for record in consumer.poll(timeout_ms=5000, max_records=1).get(tp, []):
                if record.offset == offset and record.key:
                    found[state_key] = record.key
        return found
    finally:
        consumer.close()


def _write(settings: Settings, moves: Mapping[str, list[Move]], rewrites: list[tuple[str, Move]]) -> None:
    """Each moved key's value in its new partition, then its tombstone in its old one: only once the
    broker acknowledged every copy (flush does not fail when a send did: its future tells), so a
    failure leaves both copies rather than none. `rewrites` (topic, move) are written in place
    after, without tombstones."""
    producer = kafka_clients.producer(settings, acks="all", linger_ms=5)
    try:
        copies = [producer.send(topic, key=move.key, value=move.value, partition=move.new)
                  for topic, table_moves in moves.items() for move in table_moves]
        producer.flush()
        for copy in copies:
            copy.get(timeout=60)
        tombstones = [producer.send(topic, key=move.key, value=None, partition=move.old)
                      for topic, table_moves in moves.items() for move in table_moves]
        tombstones += [producer.send(topic, key=move.key, value=move.value, partition=move.new)
                       for topic, move in rewrites]
        producer.flush()
        for tombstone in tombstones:
            tombstone.get(timeout=60)
    finally:
        producer.close()
