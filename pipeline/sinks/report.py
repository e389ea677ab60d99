"""The out-of-date servers report, read from ClickHouse."""
from __future__ import annotations

import json
from datetime import date, datetime

from pipeline.settings import Settings
from pipeline.sinks.clickhouse import connect

REPORT_COLUMNS = (
    "server", "org", "product", "build", "status", "stage", "first_detected", "throttle_enabled_date",
    "blocking_enabled_date", "next_stage_start_date", "next_stage_throttle_rate", "next_stage_block_rate",
    "recommended_builds", "last_decided",
)
REPORT_QUERY = f"SELECT {', '.join(REPORT_COLUMNS)} FROM servers FINAL ORDER BY server, org"


def report_rows(settings: Settings) -> list[dict]:
    client = connect(settings.clickhouse_dsn)
    result = client.query(REPORT_QUERY, settings={"readonly": 1})
    return [dict(zip(REPORT_COLUMNS, row)) for row in result.result_rows]


def print_report(settings: Settings, as_json: bool) -> None:
    rows = report_rows(settings)
    if as_json:
        for row in rows:
            print(json.dumps(row, default=_text))
        return
    shown = ("server", "product", "build", "status", "stage", "first_detected", "next_stage_start_date")
    table = [[_text(row[c]) for c in shown] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(shown)]
    print("  ".join(c.ljust(w) for c, w in zip(shown, widths)))
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)
