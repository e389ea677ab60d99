"""Topic and table names: recovery state is keyed by them, so they live in one place."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings

RAW = "mail.logs.raw"
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
CONTROL_STATE_TABLE = "control-state"


def sink_group(settings: Settings) -> str:
    """The sinks' Faust app id and consumer group; the workers' is `settings.app_id`."""
    return f"{settings.app_id}-sink"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    # One partition, whatever the pipeline's count: a topic read in one order (it feeds no
    # co-partitioned table but its own one-partition one, and is never grown).
    single: bool = False


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes. All but mail.control get settings.partitions
    partitions, because a Faust table's changelog must have as many partitions as the topic that
    feeds it."""
    return [
        TopicSpec(settings.topic(RAW)),
        TopicSpec(settings.topic(TRACES)),
        TopicSpec(settings.topic(DEAD_LETTERS)),
        TopicSpec(settings.topic(OBSERVATIONS)),
        TopicSpec(settings.topic(DECISIONS), compacted=True),
        TopicSpec(settings.topic(ENFORCEMENT)),
        TopicSpec(settings.topic(CONTROL), compacted=True, single=True),
        TopicSpec(settings.topic(CONTROL_APPLIED)),
    ]
