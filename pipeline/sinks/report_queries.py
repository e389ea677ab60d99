"""What the owners' report reads: every server's row, and one server's history, traffic and controls.

Each function is one call on the reader (pipeline.streaming.storage.ClickHouseHandle.read), so a page
waits for the reader once.
"""
from __future__ import annotations

from clickhouse_connect.driver.client import Client

from pipeline.sinks.queries import REPORT_COLUMNS, rows

SERVER_COLUMNS = ("server_id", *REPORT_COLUMNS)
CONTROL_COLUMNS = ("command_id", "issued_at", "action", "target", "start_date", "until_date", "reason", "issued_by",
                   "source", "outcome", "detail")

_SERVERS = f"SELECT {', '.join(SERVER_COLUMNS)} FROM servers"
# The newest event the pipeline has seen: what "now" is on the report, so a replay shows the same.
_NEWEST_EVENT = """
SELECT greatest(ifNull((SELECT maxOrNull(event_time) FROM server_messages), toDateTime64(0, 3, 'UTC')),
                ifNull((SELECT maxOrNull(decided_at) FROM decisions), toDateTime64(0, 3, 'UTC'))) AS newest
"""
_HISTORY = ("SELECT version, stage, status, build, throttle_minutes_per_hour, block_minutes_per_hour, first_detected, "
            "next_stage_start_date, reason, smtp_reply, decided_at, schedule "
            "FROM decisions FINAL WHERE server_id = %(server_id)s ORDER BY version")
# Messages from the messages seen, deferred and rejected attempts from what the MTAs reported.
_DAILY = """
SELECT day, sum(messages) AS messages, sum(deferred) AS deferred, sum(rejected) AS rejected
FROM
(
    SELECT day, messages, toUInt64(0) AS deferred, toUInt64(0) AS rejected
    FROM traffic_daily WHERE server_id = %(server_id)s
    UNION ALL
    SELECT toDate(at) AS day, toUInt64(0) AS messages, countIf(action = 'throttle') AS deferred,
           countIf(action = 'block') AS rejected
    FROM enforcement FINAL WHERE server_id = %(server_id)s GROUP BY day
)
GROUP BY day ORDER BY day
"""
_CONTROL = f"SELECT {', '.join(CONTROL_COLUMNS)} FROM control_log FINAL ORDER BY issued_at, command_id"


def overview(client: Client) -> dict:
    """{"newest_event": ISO time or None, "servers": every server's row with its server_id,
    "control": every pause and exemption, commanded or from the config file, with its outcome}."""
    return {"newest_event": newest_event(client), "servers": rows(client, f"{_SERVERS} ORDER BY server, org"),
            "control": rows(client, _CONTROL)}


def server_page(client: Client, server_id: str) -> dict | None:
    """One server's row, its decisions (every version), messages and attempts per day, every control
    entry (which ones apply to it is the page's business: patterns match in Python), and the newest
    event time; None for a server the report does not know."""
    found = rows(client, f"{_SERVERS} WHERE server_id = %(server_id)s", {"server_id": server_id})
    if not found:
        return None
    return {
        "row": found[0],
        "history": rows(client, _HISTORY, {"server_id": server_id}),
        "daily": rows(client, _DAILY, {"server_id": server_id}),
        "control": rows(client, _CONTROL),
        "newest_event": newest_event(client),
    }


def newest_event(client: Client) -> str | None:
    [row] = rows(client, _NEWEST_EVENT)
    return None if row["newest"].startswith("1970-") else row["newest"]
