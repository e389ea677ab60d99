"""Rows (JSON-ready dicts) as aligned text or JSON lines for the terminal."""
from __future__ import annotations

import json

REPORT_SHOWN = ("server", "product", "build", "status", "stage", "first_detected", "next_stage_start_date",
                "last_seen", "messages_last_24h", "deferred", "rejected", "reason")


def text_table(columns, rows: list[dict]) -> str:
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def json_lines(rows: list[dict]) -> str:
    return "\n".join(json.dumps(row) for row in rows)


def cell(value) -> str:
    """A value as terminal or page text: "-" for none, lists comma-joined."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
