"""ClickHouse tables of the pipeline: created idempotently, written in batches, idempotent under replay.

An insert returns only once ClickHouse has stored the rows (async_insert=0); the caller lets the
batch's Kafka offsets go only after that. A batch read again after a crash carries the same
deduplication token (topic, partition, its offsets: streaming.sink_agents.dedup_token) and is
dropped; rows repeated in differently cut batches share their sorting key and are folded by
ReplacingMergeTree.

Rows go as JSONEachRow, encoded by orjson: ClickHouse parses them in C++, where building the
driver's native blocks in Python cost about 15 microseconds a row. Folded observations go to the
`observations` table with their messages as arrays, which arrive as JSON already (the `messages`
field of ServerObservation) and are passed through untouched; a materialized view turns them into
one server_messages row per message inside ClickHouse.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client

from pipeline.contracts.records import schedule_records
from pipeline.contracts.schema_files import schema_folder
from pipeline.domain.policy import Decision

DDL_DIR = schema_folder("clickhouse")

# Synchronous inserts: an insert that returned is stored, which is what lets offsets be committed.
# Times travel as ISO-8601 text, which best_effort reads with their zone.
INSERT_SETTINGS = {"async_insert": 0, "date_time_input_format": "best_effort"}
OBSERVATION_COLUMNS = ("server_id", "build", "evidence", "message_keys", "message_times", "message_sizes")
ENFORCEMENT_COLUMNS = ("server_id", "hostname", "org", "at", "action", "stage", "decision_version", "client_address",
                       "helo_name")


def connect(dsn: str) -> Client:
    """`chdb:///dir` opens the embedded engine (one process at a time); http(s)://... a server."""
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)


class FolderInUse(RuntimeError):
    """The embedded engine's folder is owned by another process."""


# The open lock files, kept for the life of the process (a lock ends when its file is closed).
_owned_folders: dict[str, IO[str]] = {}


def own_embedded_folder(dsn: str) -> None:
    """For `chdb:///dir`, make this process the folder's only user (an exclusive lock on
    dir/.patchgate.lock, held until it exits); nothing for a ClickHouse server, which any number of
    processes may use. FolderInUse names the process that holds it."""
    if not dsn.startswith("chdb://"):
        return
    folder = Path(dsn.removeprefix("chdb://"))
    folder.mkdir(parents=True, exist_ok=True)
    if str(folder.resolve()) in _owned_folders:
        return
    lock = open(folder / ".patchgate.lock", "a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise FolderInUse(
            f"the embedded ClickHouse folder {folder} is in use by {holder}: with the embedded engine "
            "exactly one sink runs (`patchgate sink` or `patchgate run`); for several, use a ClickHouse "
            "server (CLICKHOUSE_URL=http://...)") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    _owned_folders[str(folder.resolve())] = lock


def create_tables(client: Client) -> None:
    # In name order: the number in front of each name creates tables before the views that read them.
    for path in sorted((f for f in DDL_DIR.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name):
        for statement in path.read_text(encoding="utf-8").split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                client.command(body)


def insert_decisions(client: Client, rows: list[Decision], dedup_token: str) -> None:
    """Every decision into `decisions`, and into `server_state` whose newest version per server wins."""
    if not rows:
        return
    insert_rows(client, "decisions", [_decision_row(d) for d in rows], dedup_token)
    insert_rows(client, "server_state", [_server_state_row(d) for d in rows], dedup_token)


def insert_observations(client: Client, rows: list[dict], dedup_token: str) -> None:
    """Folded observations, as the current ServerObservation records them (records.observation_record);
    ClickHouse writes one server_messages row per message."""
    if rows:
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": f"observations:{dedup_token}"}
        payload = b"\n".join(_observation_row(record) for record in rows)
        client.raw_insert("observations", list(OBSERVATION_COLUMNS), insert_block=payload, settings=settings,
                          fmt="JSONEachRow")


def insert_enforcement(client: Client, rows: list[tuple[dict, int, int]], dedup_token: str) -> None:
    """Enforcement records with their (partition, offset): two MTAs may report the same second."""
    if rows:
        table = [{**{c: record[c] for c in ENFORCEMENT_COLUMNS}, "topic_partition": partition, "topic_offset": offset}
                 for record, partition, offset in rows]
        insert_rows(client, "enforcement", table, dedup_token)


def insert_rows(client: Client, table: str, rows: list[dict], dedup_token: str) -> None:
    settings = {**INSERT_SETTINGS, "insert_deduplication_token": f"{table}:{dedup_token}"}
    payload = b"\n".join(orjson.dumps(row, option=orjson.OPT_UTC_Z) for row in rows)
    client.raw_insert(table, list(rows[0]), insert_block=payload, settings=settings, fmt="JSONEachRow")


def _decision_row(d: Decision) -> dict:
    return {
        "server_id": d.server_id, "org": d.org, "hostname": d.hostname, "product": d.product, "build": d.build,
        "status": d.status, "stage": d.stage, "throttle_minutes_per_hour": d.throttle_minutes_per_hour,
        "block_minutes_per_hour": d.block_minutes_per_hour, "first_detected": d.first_detected,
        "throttle_enabled_date": d.throttle_enabled_date, "blocking_enabled_date": d.blocking_enabled_date,
        "next_stage_start_date": d.next_stage_start_date, "next_stage_throttle_rate": d.next_stage_throttle_rate,
        "next_stage_block_rate": d.next_stage_block_rate, "recommended_builds": list(d.recommended_builds),
        "reason": d.reason, "smtp_reply": d.smtp_reply, "decided_at": d.decided_at, "version": d.version,
        "report_only": d.report_only,
        "schedule": schedule_records(d.schedule),
    }


def _server_state_row(d: Decision) -> dict:
    row = _decision_row(d)
    for gone in ("hostname", "throttle_minutes_per_hour", "block_minutes_per_hour", "smtp_reply", "decided_at",
                 "schedule"):
        row.pop(gone)
    return {**row, "server": d.hostname, "last_decided": d.decided_at}


def _observation_row(record: dict) -> bytes:
    # The messages' JSON object holds the three array columns: the row is spliced around it.
    head = orjson.dumps({"server_id": record["server_id"], "build": record["build"], "evidence": record["evidence"]})
    return head[:-1] + b"," + record["messages"][1:]
