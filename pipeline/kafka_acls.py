"""Who may do what on Kafka: the rights of each role (`patchgate kafka-acls`).

Kafka is where patchgate's trust boundary lies: whoever may write mail.decisions decides what
every MTA throttles, whoever may write mail.control exempts servers. So each role runs as its own
principal and gets only what its commands do, on the topics and groups of one pipeline (its topic
prefix and app id):

- operator: `topics` (creates every topic), `repartition` (grows them, moves table keys),
  `pause`/`resume`/`exempt`/`unexempt` (the only writer of mail.control), `decisions`, `wait`;
- worker: reads and writes the pipeline's topics and its table changelogs, in its consumer group;
  its repacker reads mail.logs.raw in a group of its own and writes mail.logs.packed;
- sink: reads what it stores, in its own group, and dead-letters what does not decode;
- shipper: writes mail.logs.raw, and reads it back after a send the broker may have taken;
- mta: reads mail.decisions, writes mail.enforcement;
- notify: reads mail.decisions and owns its ledger, mail.notices.

Reading, writing or altering a topic implies describing it in Kafka's model, so Describe is
granted only where nothing else is (the groups whose lag `wait` reads).
"""
from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.contracts import topics
from pipeline.settings import Settings

ROLES = ("operator", "worker", "sink", "shipper", "mta", "notify")


def default_principal(role: str) -> str:
    return f"User:patchgate-{role}"


@dataclass(frozen=True)
class Grant:
    """Some operations of one principal on some resources of one type, by literal name: one
    `kafka-acls.sh --add` line."""

    role: str
    principal: str
    resource_type: str  # "topic" or "group", as kafka-acls.sh names them
    names: tuple[str, ...]
    operations: tuple[str, ...]

    def command(self, bootstrap_servers: str, command_config: str | None) -> str:
        words = ["kafka-acls.sh", "--bootstrap-server", bootstrap_servers]
        if command_config:
            words += ["--command-config", command_config]
        words += ["--add", "--allow-principal", self.principal]
        for operation in self.operations:
            words += ["--operation", operation]
        for name in self.names:
            words += [f"--{self.resource_type}", name]
        return shlex.join(words)

    def bindings(self) -> list[dict]:
        """One binding per operation and resource, the unit of Kafka's ACL model."""
        return [{"role": self.role, "principal": self.principal, "host": "*", "permission": "ALLOW",
                 "operation": operation, "resource_type": self.resource_type, "resource_name": name,
                 "pattern_type": "LITERAL"}
                for name in self.names for operation in self.operations]


def grants(settings: Settings, principals: Mapping[str, str] | None = None,
           web_control: bool = False) -> list[Grant]:
    """The grants of every role. `principals` overrides the default principal of a role;
    `web_control` lets the sink send the control commands of its POST /control."""
    def principal(role: str) -> str:
        return (principals or {}).get(role) or default_principal(role)

    def topic(*names: str) -> tuple[str, ...]:
        return tuple(settings.topic(name) for name in names)

    every_topic = tuple(spec.name for spec in topics.created_topics(settings))
    changelogs = tuple(spec.name for spec in topics.changelog_topics(settings))
    sink_group, repack_group = topics.sink_group(settings), topics.repack_group(settings)
    operator, worker, sink = principal("operator"), principal("worker"), principal("sink")
    return [
        Grant("operator", operator, "topic", every_topic, ("Create", "Alter")),
        Grant("operator", operator, "topic", topic(topics.RAW, topics.DECISIONS, topics.CONTROL_APPLIED) + changelogs,
              ("Read",)),
        Grant("operator", operator, "topic", topic(topics.CONTROL) + changelogs, ("Write",)),
        Grant("operator", operator, "group", (settings.app_id, repack_group, sink_group), ("Describe",)),
        Grant("worker", worker, "topic",
              topic(topics.RAW, topics.PACKED, topics.TRACES, topics.OBSERVATIONS, topics.DECISIONS, topics.CONTROL,
                    topics.CONTROL_APPLIED) + changelogs, ("Read",)),
        Grant("worker", worker, "topic",
              topic(topics.PACKED, topics.OBSERVATIONS, topics.DECISIONS, topics.CONTROL_APPLIED, topics.DEAD_LETTERS)
              + changelogs, ("Write",)),
        Grant("worker", worker, "group", (settings.app_id, repack_group), ("Read",)),
        Grant("sink", sink, "topic", topic(topics.OBSERVATIONS, topics.CONTROL_APPLIED, topics.DECISIONS,
                                           topics.ENFORCEMENT), ("Read",)),
        Grant("sink", sink, "topic", topic(topics.DEAD_LETTERS, *([topics.CONTROL] if web_control else [])),
              ("Write",)),
        Grant("sink", sink, "group", (sink_group,), ("Read",)),
        Grant("shipper", principal("shipper"), "topic", topic(topics.RAW), ("Read", "Write")),
        Grant("mta", principal("mta"), "topic", topic(topics.DECISIONS), ("Read",)),
        # mail.traces: the messages that released their servers (pipeline.domain.release).
        Grant("mta", principal("mta"), "topic", topic(topics.ENFORCEMENT, topics.TRACES), ("Write",)),
        Grant("notify", principal("notify"), "topic", topic(topics.DECISIONS), ("Read",)),
        Grant("notify", principal("notify"), "topic", topic(topics.NOTICES), ("Create", "Read", "Write")),
    ]


def command_lines(made: Iterable[Grant], bootstrap_servers: str, command_config: str | None) -> list[str]:
    return [grant.command(bootstrap_servers, command_config) for grant in made]


def parse_principals(given: Iterable[str]) -> dict[str, str]:
    """`ROLE=PRINCIPAL` pairs (`mta=User:mx-policy`); ValueError names the one that does not read."""
    chosen = {}
    for pair in given:
        role, _, principal = pair.partition("=")
        if role not in ROLES or ":" not in principal:
            raise ValueError(f"--principal {pair!r}: give ROLE=TYPE:NAME, ROLE one of {', '.join(ROLES)} "
                             "(e.g. mta=User:mx-policy)")
        chosen[role] = principal
    return chosen
