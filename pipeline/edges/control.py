"""Send control commands to mail.control (the CLI's pause, resume, exempt, unexempt, report-only and
enforce, and the web port's POST /control), and read their outcomes back from mail.control.applied.

A command carries the time it was issued, from this machine's clock: that is the command's own
event time (a pause starts on the day it was issued unless it names another).
"""
from __future__ import annotations

import getpass
import socket
import time
import uuid
from datetime import UTC, date, datetime

from kafka import TopicPartition

from pipeline import kafka_clients
from pipeline.contracts import topics
from pipeline.contracts.control import CONTROL_APPLIED, CONTROL_COMMAND, command_record
from pipeline.domain.config import day
from pipeline.domain.control import ACTIONS, ControlCommand
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS
from pipeline.settings import Settings


def command_from_request(payload: object, issued_at: datetime, issued_by: str) -> ControlCommand:
    """A command from a JSON body or the CLI's arguments; ValueError names what does not read."""
    if not isinstance(payload, dict):
        raise ValueError('send {"action": ..., "target": ...}')
    unknown = sorted(set(payload) - {"action", "target", "days", "start", "until", "reason", "all_servers"})
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    action = payload.get("action")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    target = payload.get("target")
    if not isinstance(target, str) or not target.strip():
        raise ValueError("target must name an org (pause, resume; report-only, enforce: also * for the whole "
                         "site) or a server (exempt, unexempt)")
    days = payload.get("days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise ValueError(f"days must be a whole number of days, 1 or more, got {days!r}")
    reason = payload.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError(f"reason must be text, got {reason!r}")
    all_servers = payload.get("all_servers", False)
    if not isinstance(all_servers, bool):
        raise ValueError(f"all_servers must be true or false, got {all_servers!r}")
    return ControlCommand(uuid.uuid4().hex, action, target.strip().lower(), issued_at,
                          start=_optional_day(payload, "start"), days=days,
                          until=_optional_day(payload, "until"), reason=reason.strip(), issued_by=issued_by,
                          all_servers=all_servers)


def submit(settings: Settings, payload: object, issued_by: str = "http") -> dict:
    """Send the command a request describes; its outcome comes later (control_log, or `outcome`)."""
    command = command_from_request(payload, datetime.now(UTC), issued_by)
    send(settings, command)
    return {"command_id": command.command_id, "sent": True}


def operator() -> str:
    """Who issues a command from this shell: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def send(settings: Settings, command: ControlCommand) -> None:
    producer = kafka_clients.producer(settings, acks="all", reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
    try:
        producer.send(settings.topic(topics.CONTROL), key=command.command_id.encode("utf-8"),
                      value=CONTROL_COMMAND.encode(command_record(command))).get(timeout=30)
    finally:
        producer.close()


def send_and_wait(settings: Settings, command: ControlCommand, timeout_s: float) -> dict | None:
    """Send the command and wait for its outcome ({"applied": bool, "detail": text}); None if no
    worker applied it in time (one will when it runs: the command stays on mail.control)."""
    applied = TopicPartition(settings.topic(topics.CONTROL_APPLIED), 0)
    consumer = kafka_clients.consumer(settings, reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
    try:
        consumer.assign([applied])
        # Outcomes go to every partition; partition 0 always exists. Read from before the send.
        consumer.seek(applied, consumer.end_offsets([applied])[applied])
        send(settings, command)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key == command.command_id.encode("utf-8"):
                        outcome = CONTROL_APPLIED.decode(record.value)
                        return {"applied": outcome["applied"], "detail": outcome["detail"]}
        return None
    finally:
        consumer.close()


def control_topics(settings: Settings) -> list[topics.TopicSpec]:
    """The topics a command goes through, which a command before any worker ran creates."""
    names = {settings.topic(topics.CONTROL), settings.topic(topics.CONTROL_APPLIED)}
    return [spec for spec in topics.pipeline_topics(settings) if spec.name in names]


def _optional_day(payload: dict, name: str) -> date | None:
    return None if payload.get(name) is None else day(payload[name], name)
