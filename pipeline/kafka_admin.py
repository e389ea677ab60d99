"""Broker housekeeping with kafka-python: create the pipeline's topics, wait for the worker to drain."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

from pipeline import kafka_clients, topic_reading
from pipeline.contracts import topics
from pipeline.contracts.compacted import Compacted
from pipeline.settings import Settings

# Topics whose committed offsets must reach the end before the pipeline has caught up: every
# topic a consumer group of the pipeline reads, in flow order; the repackers' group reads
# REPACKED, the workers' PROCESSED, the sinks' STORED.
CONSUMED = (topics.RAW, topics.PACKED, topics.TRACES, topics.CONTROL, topics.OBSERVATIONS, topics.CONTROL_APPLIED,
            topics.DECISIONS, topics.ENFORCEMENT)
REPACKED = (topics.RAW,)
PROCESSED = (topics.PACKED, topics.TRACES, topics.CONTROL, topics.OBSERVATIONS, topics.CONTROL_APPLIED)
STORED = (topics.OBSERVATIONS, topics.CONTROL_APPLIED, topics.DECISIONS, topics.ENFORCEMENT)


@dataclass(frozen=True)
class TopicsMade:
    """What ensure_topics did: the topics it created, and one line per existing topic that has
    fewer replicas than asked (Kafka cannot add them by itself: kafka-reassign-partitions does)."""

    created: list[str]
    under_replicated: list[str]


def ensure_topics(settings: Settings, specs: list[topics.TopicSpec] | None = None) -> TopicsMade:
    """Create the missing topics of `specs` (by default every topic the project creates) with the
    replication of `topics.replication`; refuse to run on topics with the wrong partition count."""
    specs = topics.created_topics(settings) if specs is None else specs
    admin = kafka_clients.admin(settings, "patchgate-admin")
    try:
        wanted = topics.replication(settings, len(admin.describe_cluster()["brokers"]))
        existing = {t["name"]: t["partitions"] for t in admin.describe_topics([spec.name for spec in specs])
                    if t["error_code"] == 0}
        for spec in specs:
            count = len(existing.get(spec.name, ()))
            if spec.name in existing and not spec.single and count != settings.partitions:
                raise SystemExit(
                    f"topic {spec.name} has {count} partitions, the pipeline needs "
                    f"{settings.partitions} (PATCHGATE_PARTITIONS): its tables are co-partitioned with it"
                )
        missing = {spec.name: {"num_partitions": spec.partitions(settings), "replication_factor": wanted.factor,
                               "configs": {"min.insync.replicas": str(wanted.min_insync),
                                           **({"cleanup.policy": "compact"} if spec.compacted else {})}}
                   for spec in specs if spec.name not in existing}
        if missing:
            answer = admin.create_topics(missing, raise_errors=False)
            for topic in answer["topics"]:
                # Another process may have created one meanwhile: that is what was wanted.
                if topic["error_code"] not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(topic["error_code"])(f"creating {topic['name']}: {topic['error_message']}")
            # Created is not yet usable: wait until every partition has a leader. A busy controller
            # electing a few hundred leaders can take longer than kafka-python's 10 s.
            admin.wait_for_topics(list(missing), timeout_ms=60_000)
        under = [f"topic {spec.name} has {fewest} replicas, {wanted.factor} asked"
                 for spec in specs if spec.name in existing
                 and (fewest := min(len(p["replica_nodes"]) for p in existing[spec.name])) < wanted.factor]
        return TopicsMade(list(missing), under)
    finally:
        admin.close()


def missing_topics(settings: Settings, role: str) -> list[str]:
    """The topics a worker (with its changelogs) or a sink reads or writes that do not exist; one
    its principal may not describe is not known to be missing, and not named."""
    specs = topics.pipeline_topics(settings) + (topics.changelog_topics(settings) if role != "sink" else [])
    admin = kafka_clients.admin(settings, "patchgate-admin")
    try:
        return [t["name"] for t in admin.describe_topics([spec.name for spec in specs])
                if t["error_code"] == UnknownTopicOrPartitionError.errno]
    finally:
        admin.close()


def lag(settings: Settings, names: tuple[str, ...] = CONSUMED) -> int:
    """Messages the consumer groups reading the given topics have not committed yet (the workers'
    and the sinks' both count on mail.observations, which both read)."""
    consumer = kafka_clients.consumer(settings)
    admin = kafka_clients.admin(settings, "patchgate-admin")
    try:
        total = 0
        for group, consumed in ((topics.repack_group(settings), REPACKED), (settings.app_id, PROCESSED),
                                (topics.sink_group(settings), STORED)):
            partitions = [
                TopicPartition(settings.topic(name), p)
                for name in names if name in consumed
                for p in consumer.partitions_for_topic(settings.topic(name)) or ()
            ]
            if not partitions:
                continue
            ends = consumer.end_offsets(partitions)
            committed = _committed_offsets(admin, group)
            for tp in partitions:
                done = committed.get(tp)
                total += ends[tp] - (done.offset if done is not None and done.offset >= 0 else 0)
        return total
    finally:
        consumer.close()
        admin.close()


def workers_committed_raw(settings: Settings) -> Callable[[TopicPartition], int | None]:
    """Where the workers' group had committed on mail.logs.raw, for the repacker to start there on
    a pipeline whose workers read that topic themselves before (nothing, for a new pipeline)."""
    admin = kafka_clients.admin(settings, "patchgate-admin")
    try:
        raw = settings.topic(topics.RAW)
        committed = {tp.partition: meta.offset for tp, meta in _committed_offsets(admin, settings.app_id).items()
                     if tp.topic == raw and meta.offset >= 0}
    finally:
        admin.close()
    return lambda tp: committed.get(tp.partition)


def _committed_offsets(admin: KafkaAdminClient, group: str, patience: float = 30.0) -> dict:
    """The group's committed offsets, asked again while the coordinator is not ready to answer.

    The coordinator is briefly unavailable while the broker creates __consumer_offsets (first
    group request) and while it reloads the group after a member died (CoordinatorLoadInProgress):
    an empty answer then would read as "nothing committed" and a wrong lag."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return admin.list_group_offsets(group).get(group, {})
        except KafkaError as error:
            if not error.retriable or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def wait_until_drained(
    settings: Settings, timeout: float, settle: float = 2.0, worker_alive: Callable[[], bool] = lambda: True
) -> None:
    """Return once the worker has consumed and committed everything, and stayed so for `settle` s.

    When sources end after a short idle time (stream.source_idle_seconds, a minute or less), the
    wait lasts that long too, so that what they held is through as well."""
    idle = settings.stream.source_idle_seconds
    if 0 < idle <= 60:
        settle = max(settle, idle + 2.0)
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        if not worker_alive():
            raise RuntimeError("the worker exited before it had processed everything")
        if lag(settings) == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= settle:
                return
        else:
            idle_since = None
        time.sleep(0.5)
    raise TimeoutError(f"the worker still had {lag(settings)} messages to process after {timeout:.0f} s")


def read_compacted(settings: Settings, topic: str, timeout_s: float = 60.0) -> dict[int, dict[bytes, bytes]]:
    """A compacted topic (a table's changelog, mail.notices) read to its end: the latest value of
    each key per partition, deleted keys left out (compaction may not have run yet). Raises as
    topic_reading.read_compacted does: for a topic the brokers do not know, or a read that stalls."""
    consumer = kafka_clients.consumer(settings)
    try:
        latest = topic_reading.read_compacted(consumer, topic, lambda: Compacted(bytes), timeout_s)
        return {partition: values.by_key for partition, values in latest.items()}
    finally:
        consumer.close()
