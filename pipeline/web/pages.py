"""The owners' report as plain server-rendered HTML: the summary with the servers table, and a page
per server. No JavaScript: filters are a GET form, sorting is links, charts are inline SVG. The
templates (pipeline/web/templates, rendered by pipeline.web.rendering) draw the pages and escape
every value; the functions here hand them plain data."""
from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from pipeline.web.charts import daily_chart
from pipeline.web.rendering import render
from pipeline.web.server_detail import enforcement_text
from pipeline.web.summary import NO_ORG, ServerFilter
from pipeline.web.tables import cell

TABLE_COLUMNS = (("server", "Server"), ("org", "Org"), ("product", "Product"), ("build", "Build"),
                 ("status", "Status"), ("stage", "Stage"), ("first_detected", "First detected"),
                 ("next_stage_start_date", "Next stage"), ("last_seen", "Last seen"),
                 ("messages_last_24h", "Messages 24 h"), ("deferred", "Deferred"), ("rejected", "Rejected"),
                 ("reason", "Why"))
RECOMMENDED_SHOWN = 5


def overview_page(summary: dict, shown: list[dict], everyone: list[dict], chosen: ServerFilter,
                  controls: list[dict]) -> str:
    """The summary, the servers table of `shown` (`everyone` gives the filter's choices), then every
    pause and exemption with its outcome."""
    return render(
        "overview.html", title="Out-of-date mail servers", newest_event=summary.get("newest_event"),
        counts=_counts(summary), rollout=summary["report_only"], upcoming_days=summary["upcoming_days"],
        upcoming=[change | {"then": enforcement_text(change["server_id"], change["throttle_minutes"],
                                                     change["block_minutes"])} for change in summary["upcoming"]],
        rows=shown, everyone=len(everyone), selects=_selects(everyone, chosen),
        sort=f"{'-' if chosen.descending else ''}{chosen.sort}", query=urlencode(chosen.query()),
        head=_head(chosen), controls=controls)


def servers_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([["" if row[c] is None else cell(row[c]) for c in columns] for row in rows])
    return out.getvalue()


def server_page(detail: dict) -> str:
    row = detail["server"]
    return render("server.html", title=row["server"] + (f" ({row['org']})" if row["org"] else ""), detail=detail,
                  recommended=detail["recommended"][:RECOMMENDED_SHOWN],
                  more_recommended=detail["recommended"][RECOMMENDED_SHOWN:], chart=daily_chart(detail["daily"]))


def message_page(title: str, message: str) -> str:
    return render("message.html", title=title, message=message)


def login_page(next_path: str, refused: bool = False) -> str:
    """The form that trades a token for the session cookie, then leads to `next_path` (a path of
    this port); `refused` after a token that is none of the port's."""
    return render("login.html", title="Log in", next_path=next_path, refused=refused)


def _counts(summary: dict) -> dict:
    """The servers by status and stage, each count linking to the table filtered to those."""
    stages = sorted(int(stage) for stage in summary["by_stage"])
    cells = {(c["status"], c["stage"]): c["servers"] for c in summary["by_status_and_stage"]}
    statuses = [{
        "status": status, "servers": total,
        "href": f"/report.html?{urlencode({'status': status})}#servers",
        "counts": [{"servers": cells.get((status, stage)),
                    "href": f"/report.html?{urlencode({'status': status, 'stage': stage})}#servers"}
                   for stage in stages],
    } for status, total in summary["by_status"].items()]
    return {"stages": stages, "statuses": statuses, "by_stage": [summary["by_stage"][str(stage)] for stage in stages],
            "servers": summary["servers"]}


def _selects(everyone: list[dict], chosen: ServerFilter) -> list[dict]:
    """The filter form's choices, each with the option chosen (None: any)."""
    def select(name: str, label: str, options: list[str], current) -> dict:
        return {"name": name, "label": label, "options": options, "chosen": None if current is None else str(current)}

    orgs = sorted({row["org"] for row in everyone if row["org"]}) + [NO_ORG]
    statuses = sorted({row["status"] for row in everyone})
    stages = [str(s) for s in sorted({row["stage"] for row in everyone})]
    return [select("org", "Org", orgs, chosen.org), select("status", "Status", statuses, chosen.status),
            select("stage", "Stage", stages, chosen.stage)]


def _head(chosen: ServerFilter) -> list[dict]:
    """The servers table's columns; each but the reason links to the table sorted by it, the other
    way round for the column it is sorted by now."""
    head = []
    for column, label in TABLE_COLUMNS:
        if column == "reason":
            head.append({"name": column, "label": label, "href": None, "arrow": ""})
            continue
        descending = column == chosen.sort and not chosen.descending
        query = urlencode(chosen.query(sort=f"{'-' if descending else ''}{column}"))
        head.append({"name": column, "label": label, "href": f"/report.html?{query}#servers",
                     "arrow": (" ▼" if chosen.descending else " ▲") if column == chosen.sort else ""})
    return head
