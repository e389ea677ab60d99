"""The ClickHouse sink: report tables written in batches, idempotent under replay.

One object owns the order "write the batch, then let the offsets go": `write_decisions` returns
only after ClickHouse has the rows, and the caller acks the batch's Kafka events after that. A
batch read again after a crash carries the same deduplication token (topic, partition, first and
last offset), so ClickHouse drops it instead of storing it twice.
"""
from __future__ import annotations

from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.domain.policy import Decision

DDL_DIR = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse"

DECISION_COLUMNS = (
    "server_id", "org", "hostname", "product", "build", "status", "stage",
    "throttle_minutes_per_hour", "block_minutes_per_hour", "first_detected",
    "throttle_enabled_date", "blocking_enabled_date", "next_stage_start_date",
    "next_stage_throttle_rate", "next_stage_block_rate", "recommended_builds", "reason",
    "smtp_reply", "decided_at", "version",
)
SERVER_COLUMNS = (
    "server_id", "server", "org", "product", "build", "status", "stage", "first_detected",
    "throttle_enabled_date", "blocking_enabled_date", "next_stage_start_date",
    "next_stage_throttle_rate", "next_stage_block_rate", "recommended_builds", "reason",
    "last_decided", "version",
)
# Synchronous inserts: an insert that returned is stored, which is what lets offsets be committed.
INSERT_SETTINGS = {"async_insert": 0}


def connect(dsn: str) -> Client:
    """`chdb:///dir` opens the embedded engine (one process at a time); http(s)://... a server."""
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)


def create_tables(client: Client) -> None:
    for path in sorted(DDL_DIR.glob("*.sql")):
        for statement in path.read_text().split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                client.command(body)


class ClickHouseSink:
    def __init__(self, client: Client):
        self.client = client

    def write_decisions(self, decisions: list[Decision], dedup_token: str) -> None:
        if not decisions:
            return
        self.client.insert(
            "decisions",
            [_decision_row(d) for d in decisions],
            column_names=DECISION_COLUMNS,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": f"decisions:{dedup_token}"},
        )
        self.client.insert(
            "servers",
            [_server_row(d) for d in decisions],
            column_names=SERVER_COLUMNS,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": f"servers:{dedup_token}"},
        )


def _decision_row(d: Decision) -> list:
    return [
        d.server_id, d.org, d.hostname, d.product, d.build, d.status, d.stage,
        d.throttle_minutes_per_hour, d.block_minutes_per_hour, d.first_detected,
        d.throttle_enabled_date, d.blocking_enabled_date, d.next_stage_start_date,
        d.next_stage_throttle_rate, d.next_stage_block_rate, list(d.recommended_builds), d.reason,
        d.smtp_reply, d.decided_at, d.version,
    ]


def _server_row(d: Decision) -> list:
    return [
        d.server_id, d.hostname, d.org, d.product, d.build, d.status, d.stage, d.first_detected,
        d.throttle_enabled_date, d.blocking_enabled_date, d.next_stage_start_date,
        d.next_stage_throttle_rate, d.next_stage_block_rate, list(d.recommended_builds), d.reason,
        d.decided_at, d.version,
    ]
