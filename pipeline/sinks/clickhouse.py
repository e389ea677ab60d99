"""ClickHouse tables of the pipeline: created idempotently, written in batches, idempotent under replay.

An insert returns only once ClickHouse has stored the rows (async_insert=0); the caller lets the
batch's Kafka offsets go only after that. A batch read again after a crash carries the same
deduplication token (topic, partition, first and last offset) and is dropped; rows repeated in
differently cut batches share their sorting key and are folded by ReplacingMergeTree.
"""
from __future__ import annotations

from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import Decision

DDL_DIR = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse"

DECISION_COLUMNS = (
    "server_id", "org", "hostname", "product", "build", "status", "stage",
    "throttle_minutes_per_hour", "block_minutes_per_hour", "first_detected",
    "throttle_enabled_date", "blocking_enabled_date", "next_stage_start_date",
    "next_stage_throttle_rate", "next_stage_block_rate", "recommended_builds", "reason",
    "smtp_reply", "decided_at", "version",
)
SERVER_STATE_COLUMNS = (
    "server_id", "server", "org", "product", "build", "status", "stage", "first_detected",
    "throttle_enabled_date", "blocking_enabled_date", "next_stage_start_date",
    "next_stage_throttle_rate", "next_stage_block_rate", "recommended_builds", "reason",
    "last_decided", "version",
)
SERVER_MESSAGE_COLUMNS = ("server_id", "day", "message_key", "event_time", "total_bytes", "build", "evidence")
ENFORCEMENT_COLUMNS = ("server_id", "hostname", "org", "at", "action", "stage", "decision_version", "client_address",
                       "helo_name", "topic_partition", "topic_offset")
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


def insert_decisions(client: Client, rows: list[Decision], dedup_token: str) -> None:
    """Every decision into `decisions`, and into `server_state` whose newest version per server wins."""
    if not rows:
        return
    _insert(client, "decisions", [_decision_row(d) for d in rows], DECISION_COLUMNS, dedup_token)
    _insert(client, "server_state", [_server_state_row(d) for d in rows], SERVER_STATE_COLUMNS, dedup_token)


def insert_observations(client: Client, rows: list[ServerObservation], dedup_token: str) -> None:
    """One row per message per observed server, for the traffic figures."""
    if rows:
        _insert(client, "server_messages", [_server_message_row(o) for o in rows], SERVER_MESSAGE_COLUMNS, dedup_token)


def insert_enforcement(client: Client, rows: list[tuple[dict, int, int]], dedup_token: str) -> None:
    """Enforcement records with their (partition, offset): two MTAs may report the same second."""
    if rows:
        table = [[record[c] for c in ENFORCEMENT_COLUMNS[:-2]] + [partition, offset] for record, partition, offset in rows]
        _insert(client, "enforcement", table, ENFORCEMENT_COLUMNS, dedup_token)


def _insert(client: Client, table: str, rows: list[list], columns: tuple[str, ...], dedup_token: str) -> None:
    settings = {**INSERT_SETTINGS, "insert_deduplication_token": f"{table}:{dedup_token}"}
    client.insert(table, rows, column_names=columns, settings=settings)


def _decision_row(d: Decision) -> list:
    return [
        d.server_id, d.org, d.hostname, d.product, d.build, d.status, d.stage,
        d.throttle_minutes_per_hour, d.block_minutes_per_hour, d.first_detected,
        d.throttle_enabled_date, d.blocking_enabled_date, d.next_stage_start_date,
        d.next_stage_throttle_rate, d.next_stage_block_rate, list(d.recommended_builds), d.reason,
        d.smtp_reply, d.decided_at, d.version,
    ]


def _server_state_row(d: Decision) -> list:
    return [
        d.server_id, d.hostname, d.org, d.product, d.build, d.status, d.stage, d.first_detected,
        d.throttle_enabled_date, d.blocking_enabled_date, d.next_stage_start_date,
        d.next_stage_throttle_rate, d.next_stage_block_rate, list(d.recommended_builds), d.reason,
        d.decided_at, d.version,
    ]


def _server_message_row(o: ServerObservation) -> list:
    # Without a Message-ID the time and size stand in for the message (rare: Exim "<=" without id=).
    key = o.message_id or f"@{o.event_time.isoformat()}/{o.total_bytes}"
    return [o.server_id, o.event_time.date(), key, o.event_time, o.total_bytes or 0, o.build, o.evidence]
