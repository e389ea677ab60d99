"""The control topics' records: an operator's command on mail.control (Avro ControlCommand), and its
outcome with what is granted after it on mail.control.applied (Avro ControlApplied), to and from
pipeline.domain.control's types."""
from __future__ import annotations

from datetime import UTC

from pipeline.contracts.avro import AvroContract
from pipeline.domain.config import Exemption, Pause
from pipeline.domain.control import ControlCommand, Controls, Outcome

CONTROL_COMMAND = AvroContract("ControlCommand")
CONTROL_APPLIED = AvroContract("ControlApplied")


def command_record(command: ControlCommand) -> dict:
    return {"command_id": command.command_id, "action": command.action, "target": command.target,
            "issued_at": command.issued_at, "start": command.start, "days": command.days, "until": command.until,
            "reason": command.reason, "issued_by": command.issued_by, "all_servers": command.all_servers}


def command_from_record(record: dict) -> ControlCommand:
    return ControlCommand(**{**record, "issued_at": record["issued_at"].astimezone(UTC)})


def applied_record(command: ControlCommand, outcome: Outcome, controls: Controls) -> dict:
    return {"command": command_record(command), "applied": outcome.applied, "detail": outcome.detail,
            "pauses": [{"org": p.org, "start": p.start, "days": p.days} for p in controls.pauses],
            "exemptions": [{"pattern": e.pattern, "until": e.until, "reason": e.reason} for e in controls.exemptions],
            "report_only": list(controls.report_only)}


def controls_from_applied(record: dict) -> Controls:
    """What an outcome says is granted (without the outcomes: enforce needs none)."""
    return Controls(tuple(Pause(**p) for p in record["pauses"]), tuple(Exemption(**e) for e in record["exemptions"]),
                    report_only=tuple(record["report_only"]))
