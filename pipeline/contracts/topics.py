"""Topic and table names: recovery state is keyed by them, so they live in one place."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from kafka.partitioner.default import murmur2

from pipeline.settings import Settings

RAW = "mail.logs.raw"
# mail.logs.raw's records as the repacker forwards them to the workers (pipeline.streaming.repack).
PACKED = "mail.logs.packed"
TRACES = "mail.traces"
DEAD_LETTERS = "mail.traces.dlq"
OBSERVATIONS = "mail.observations"
DECISIONS = "mail.decisions"
ENFORCEMENT = "mail.enforcement"
# Operators' commands, in one order: one partition.
CONTROL = "mail.control"
CONTROL_APPLIED = "mail.control.applied"
# What `patchgate notify` sent (compacted): one record per server and event.
NOTICES = "mail.notices"

# Faust names a table's changelog topic "<app id>-<table name>-changelog".
PARSER_STATE_TABLE = "parser-state"
OPEN_MESSAGES_TABLE = "open-messages"
SERVER_STATE_TABLE = "server-state"
CONTROLS_IN_FORCE_TABLE = "controls-in-force"
# The control agent's own state, beside mail.control's one partition.
CONTROL_STATE_TABLE = "control-state"
TABLES = (PARSER_STATE_TABLE, OPEN_MESSAGES_TABLE, SERVER_STATE_TABLE, CONTROLS_IN_FORCE_TABLE, CONTROL_STATE_TABLE)


@lru_cache(maxsize=1 << 16)  # murmur2 is pure Python (16 µs), and a worker places its servers' keys again and again
def partition_for(key: bytes, count: int) -> int:
    """The partition Kafka's default partitioner (Java's, kafka-python's, aiokafka's) gives `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % count


def repack_group(settings: Settings) -> str:
    """The repackers' consumer group on mail.logs.raw (the workers' group reads mail.logs.packed)."""
    return f"{settings.app_id}-repack"


def sink_group(settings: Settings) -> str:
    """The sinks' Faust app id and consumer group; the workers' is `settings.app_id`."""
    return f"{settings.app_id}-sink"


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    # One partition, whatever the pipeline's count: a topic read in one order (it feeds no
    # co-partitioned table but its own one-partition one, and is never grown).
    single: bool = False

    def partitions(self, settings: Settings) -> int:
        return 1 if self.single else settings.partitions


@dataclass(frozen=True)
class Replication:
    """Replicas of every topic the project creates, and how many must have a write before it counts."""

    factor: int
    min_insync: int


def replication(settings: Settings, brokers: int) -> Replication:
    """The settings' replication, or by default 3 replicas (as many as there are brokers when the
    cluster has fewer) with 2 in sync (1 below 3 replicas, so that one broker down stops no write)."""
    factor = settings.replication_factor or min(3, max(brokers, 1))
    return Replication(factor, settings.min_insync_replicas or (2 if factor >= 3 else 1))


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes. All but mail.control get settings.partitions
    partitions, because a Faust table's changelog must have as many partitions as the topic that
    feeds it."""
    return [
        TopicSpec(settings.topic(RAW)),
        TopicSpec(settings.topic(PACKED)),
        TopicSpec(settings.topic(TRACES)),
        TopicSpec(settings.topic(DEAD_LETTERS)),
        TopicSpec(settings.topic(OBSERVATIONS)),
        TopicSpec(settings.topic(DECISIONS), compacted=True),
        TopicSpec(settings.topic(ENFORCEMENT)),
        TopicSpec(settings.topic(CONTROL), compacted=True, single=True),
        TopicSpec(settings.topic(CONTROL_APPLIED)),
    ]


def changelog_topics(settings: Settings) -> list[TopicSpec]:
    """The workers' table changelogs (compacted, co-partitioned with the topics that feed them)."""
    return [TopicSpec(changelog_topic(settings, table), compacted=True, single=table == CONTROL_STATE_TABLE)
            for table in TABLES]


def notices_topic(settings: Settings) -> TopicSpec:
    return TopicSpec(settings.topic(NOTICES), compacted=True)


def created_topics(settings: Settings) -> list[TopicSpec]:
    """What `patchgate topics` creates: every topic of the pipeline, the changelogs Faust would
    otherwise create on its own (with its own replication), and `notify`'s ledger."""
    return [*pipeline_topics(settings), *changelog_topics(settings), notices_topic(settings)]
