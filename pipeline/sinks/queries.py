"""Read-only queries for analysts and the report, the same against the embedded engine or a server."""
from __future__ import annotations

from datetime import UTC, date, datetime

from clickhouse_connect.driver.client import Client

READ_ONLY = {"readonly": 1}
# An analyst's query shares the engine with the writers: it gets a time and a result size it may
# not pass (readonly=1 also keeps it from raising them with SETTINGS), and fails instead.
SQL_LIMITS = {"max_execution_time": 10, "max_result_rows": 10_000, "result_overflow_mode": "throw"}
REPORT_COLUMNS = (
    "server", "org", "product", "build", "status", "stage", "first_detected", "throttle_enabled_date",
    "blocking_enabled_date", "next_stage_start_date", "next_stage_throttle_rate", "next_stage_block_rate",
    "recommended_builds", "reason", "last_seen", "messages_last_24h", "deferred", "rejected", "report_only",
    "would_defer", "would_reject",
)
REPORT_QUERY = f"SELECT {', '.join(REPORT_COLUMNS)} FROM servers ORDER BY server, org"


def run_sql(client: Client, sql: str) -> dict:
    """{"columns": [...], "rows": [[...], ...]} with JSON-ready values; writes, and queries over the
    limits, are refused by ClickHouse."""
    # The limits before readonly: ClickHouse applies them in order, and refuses any once readonly.
    result = client.query(sql, settings=SQL_LIMITS | READ_ONLY)
    return {"columns": list(result.column_names), "rows": [[plain(v) for v in row] for row in result.result_rows]}


def report(client: Client) -> list[dict]:
    return rows(client, REPORT_QUERY)


def rows(client: Client, sql: str, parameters: dict | None = None) -> list[dict]:
    """The report's own queries (no analyst limits: a site may have more servers than an analyst
    may fetch), as JSON-ready dicts; `parameters` fill %(name)s."""
    result = client.query(sql, parameters=parameters, settings=READ_ONLY)
    return [{c: plain(v) for c, v in zip(result.column_names, row, strict=True)} for row in result.result_rows]


def plain(value):
    """ClickHouse values as JSON: times in UTC with Z, dates as YYYY-MM-DD."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):  # a named tuple
        return {name: plain(v) for name, v in value.items()}
    return value
