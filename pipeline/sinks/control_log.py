"""Rows of control_log: every control command's outcome (mail.control.applied), and the pauses,
exemptions and report-only settings of the config file, which the sink writes as it starts (no
issue time: NULL)."""
from __future__ import annotations

import hashlib
from datetime import timedelta

import orjson
from clickhouse_connect.driver.client import Client

from pipeline.domain.config import SITE, PolicyConfig
from pipeline.sinks.clickhouse import insert_rows


def command_row(applied: dict) -> dict:
    """A ControlApplied record as a row."""
    command = applied["command"]
    return {
        "command_id": command["command_id"], "issued_at": command["issued_at"], "action": command["action"],
        "target": command["target"], "start_date": command["start"], "until_date": _until(command),
        "reason": command["reason"], "issued_by": command["issued_by"], "source": "command",
        "outcome": "applied" if applied["applied"] else "refused", "detail": applied["detail"],
    }


def config_rows(config: PolicyConfig) -> list[dict]:
    rows = [{"command_id": f"config:pause:{p.org.lower()}:{p.start.isoformat()}:{p.days}", "issued_at": None,
             "action": "pause", "target": p.org.lower(), "start_date": p.start,
             "until_date": p.start + timedelta(days=p.days), "reason": "", "issued_by": "config file",
             "source": "config", "outcome": "applied", "detail": "policy.pauses (within the yearly budget)"}
            for p in config.pauses]
    rows += [{"command_id": f"config:exempt:{pattern.lower()}", "issued_at": None, "action": "exempt",
              "target": pattern.lower(), "start_date": None, "until_date": None, "reason": "",
              "issued_by": "config file", "source": "config", "outcome": "applied",
              "detail": "policy.exemptions (no end)"} for pattern in config.exemptions]
    report_only = [(SITE, "policy.report_only")] if config.report_only else []
    report_only += [(org.lower(), "policy.report_only_orgs") for org in config.report_only_orgs]
    rows += [{"command_id": f"config:report-only:{target}", "issued_at": None, "action": "report-only",
              "target": target, "start_date": None, "until_date": None, "reason": "", "issued_by": "config file",
              "source": "config", "outcome": "applied", "detail": f"{key} (no end)"} for target, key in report_only]
    return rows


def config_token(rows: list[dict]) -> str:
    """The deduplication token of the config file's rows: from what they say, so that a file changed
    since the last start is written again, and one unchanged is not written twice."""
    content = orjson.dumps(sorted(rows, key=lambda row: row["command_id"]), option=orjson.OPT_SORT_KEYS)
    return "config:" + hashlib.sha256(content).hexdigest()[:32]


def insert_control_log(client: Client, rows: list[dict], dedup_token: str) -> None:
    if rows:
        insert_rows(client, "control_log", rows, dedup_token)


def _until(command: dict):
    if command["action"] == "pause" and command["days"]:
        start = command["start"] or command["issued_at"].date()
        return start + timedelta(days=command["days"])
    return command["until"]
