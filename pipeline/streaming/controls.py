"""Control commands in the stream: mail.control -> control -> mail.control.applied -> enforce.

mail.control has one partition, so one worker folds every command in one order (domain.control)
and keeps the Controls in its `control-state` table. For each command it sends the outcome, with
what is granted after it, to every partition of mail.control.applied: enforce
reads those partitions beside mail.observations (co-partitioned), keeps the newest in its
partition of `controls-in-force`, and decides again every server of the partition that the change
bears on. A worker taking a partition over finds there what was in force for it. The sink stores
every outcome in ClickHouse's control_log.

The controls are sent and acknowledged before the control table is written (the agents' order):
a command read again after a crash is known by its id and sent again with the outcome it had.

mail.control is compacted (key: the command id). A tombstone deletes a command from it, not from
what is in force: the agent logs it and goes on (resume and unexempt undo a command).
"""
from __future__ import annotations

import asyncio
import logging
from datetime import date

import faust
import orjson

from pipeline.contracts.compacted import is_tombstone
from pipeline.contracts.control import CONTROL_APPLIED, CONTROL_COMMAND, applied_record, command_from_record
from pipeline.domain.config import Exemption, Pause
from pipeline.domain.control import Controls, Outcome, apply
from pipeline.settings import Settings
from pipeline.streaming.dead_letters import DeadLetterLimit, decoded
from pipeline.streaming.failures import batches, stops_worker_on_failure
from pipeline.streaming.tables import TableBatch, flushed

log = logging.getLogger(__name__)
# The one key of both control tables (in each partition of controls-in-force).
CONTROLS_KEY = b"controls"


def encode_controls(controls: Controls) -> bytes:
    return orjson.dumps({
        "pauses": [[p.org, p.start.isoformat(), p.days] for p in controls.pauses],
        "exemptions": [[e.pattern, e.until.isoformat(), e.reason] for e in controls.exemptions],
        "outcomes": [[command_id, o.applied, o.detail] for command_id, o in controls.outcomes],
        "report_only": list(controls.report_only),
    })


def decode_controls(data: bytes) -> Controls:
    stored = orjson.loads(data)
    return Controls(
        tuple(Pause(org, date.fromisoformat(start), days) for org, start, days in stored["pauses"]),
        tuple(Exemption(pattern, date.fromisoformat(until), reason) for pattern, until, reason in stored["exemptions"]),
        tuple((command_id, Outcome(applied, detail)) for command_id, applied, detail in stored["outcomes"]),
        # (Stored before report-only existed: none.)
        tuple(stored.get("report_only", ())),
    )


def register(app: faust.App, control: faust.TopicT, applied: faust.TopicT, dead_letters: faust.TopicT,
             table, settings: Settings) -> None:
    """The control agent; `table` is the control-state table (one partition, like mail.control)."""
    config = settings.policy

    @app.agent(control)
    async def fold_commands(stream):
        limit = DeadLetterLimit.for_agent("control", settings.dead_letters)
        async with stops_worker_on_failure(app, "control"):
            async for events in batches(stream, 100, 0.05):
                pending: list = []
                state = TableBatch(table, decode=decode_controls, encode=encode_controls)
                for event in events:
                    if is_tombstone(event.message.value):
                        message = event.message
                        log.info("%s/%s/%s: tombstone of command %r; what it did stays in force (resume or unexempt "
                                 "undoes it)", message.topic, message.partition, message.offset, message.key)
                        continue
                    command = await decoded(dead_letters, event, CONTROL_COMMAND, command_from_record, pending, limit)
                    if command is None:
                        continue
                    controls = state.get(CONTROLS_KEY, event) or Controls()
                    controls, outcome = apply(controls, command, config)
                    value = CONTROL_APPLIED.encode(applied_record(command, outcome, controls))
                    # Every partition: mail.control.applied has the pipeline's partition count.
                    pending += [await applied.send(key=command.command_id.encode("utf-8"), value=value, partition=p)
                                for p in range(settings.partitions)]
                    state.put(CONTROLS_KEY, controls, event)
                await asyncio.gather(*pending)
                await asyncio.gather(*await flushed(state))
