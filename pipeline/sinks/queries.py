"""Read-only queries for analysts and the report, the same against the embedded engine or a server."""
from __future__ import annotations

from datetime import UTC, date, datetime

from clickhouse_connect.driver.client import Client

READ_ONLY = {"readonly": 1}
REPORT_COLUMNS = (
    "server", "org", "product", "build", "status", "stage", "first_detected", "throttle_enabled_date",
    "blocking_enabled_date", "next_stage_start_date", "next_stage_throttle_rate", "next_stage_block_rate",
    "recommended_builds", "reason", "last_seen", "messages_last_24h", "deferred", "rejected",
)
REPORT_QUERY = f"SELECT {', '.join(REPORT_COLUMNS)} FROM servers ORDER BY server, org"


def run_sql(client: Client, sql: str) -> dict:
    """{"columns": [...], "rows": [[...], ...]} with JSON-ready values; writes are refused by ClickHouse."""
    result = client.query(sql, settings=READ_ONLY)
    return {"columns": list(result.column_names), "rows": [[plain(v) for v in row] for row in result.result_rows]}


def report(client: Client) -> list[dict]:
    result = run_sql(client, REPORT_QUERY)
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def plain(value):
    """ClickHouse values as JSON: times in UTC with Z, dates as YYYY-MM-DD."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
