"""The report's servers list: filters and sort order from a page's query string, and the summary
(servers by status and stage, the stage changes of the next 7 days).

"Now" is the newest event time in the data, not the wall clock: a replay of last month's logs
shows last month's report.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.domain.config import Stage
from pipeline.domain.orgs import same_org

UPCOMING_DAYS = 7
NO_ORG = "-"
SORTABLE = ("server", "org", "product", "build", "status", "stage", "first_detected", "next_stage_start_date",
            "last_seen", "messages_last_24h", "deferred", "rejected")


@dataclass(frozen=True)
class ServerFilter:
    """Which servers a list shows, and in what order. `org` NO_ORG means servers without an org."""

    org: str | None = None
    status: str | None = None
    stage: int | None = None
    sort: str = "server"
    descending: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ServerFilter:
        """From ?org=&status=&stage=&sort= (sort "-stage" is descending); empty values mean any.
        Raises ValueError naming the parameter that does not read."""
        stage_text = query.get("stage", "").strip()
        if stage_text and not stage_text.isdigit():
            raise ValueError(f"stage must be a stage number, got {stage_text!r}")
        sort = query.get("sort", "").strip() or "server"
        column = sort.removeprefix("-")
        if column not in SORTABLE:
            raise ValueError(f"sort must be one of {', '.join(SORTABLE)} (- in front for descending), got {sort!r}")
        return cls(org=query.get("org", "").strip() or None, status=query.get("status", "").strip() or None,
                   stage=int(stage_text) if stage_text else None, sort=column, descending=sort.startswith("-"))

    def query(self, **changes) -> dict[str, str]:
        """The query string parameters of this filter with `changes`, the empty ones left out."""
        values = {"org": self.org, "status": self.status, "stage": self.stage,
                  "sort": f"{'-' if self.descending else ''}{self.sort}"} | changes
        params = {name: str(value) for name, value in values.items() if value not in (None, "")}
        if params.get("sort") == "server":
            del params["sort"]
        return params

    def apply(self, servers: list[dict]) -> list[dict]:
        chosen = [row for row in servers if self._keeps(row)]
        present = sorted((row for row in chosen if row[self.sort] is not None), key=lambda row: row[self.sort],
                         reverse=self.descending)
        # Servers without a value come last either way, as in ClickHouse.
        return present + [row for row in chosen if row[self.sort] is None]

    def _keeps(self, row: dict) -> bool:
        if self.org is not None and not same_org(self.org, row["org"] or NO_ORG):
            return False
        return ((self.status is None or row["status"] == self.status)
                and (self.stage is None or row["stage"] == self.stage))


def summarize(servers: list[dict], newest_event: str | None, stages: tuple[Stage, ...]) -> dict:
    """Counts by status and by stage, a status x stage table, and the next stage changes: every server
    whose next stage starts within UPCOMING_DAYS of the newest event (or is already due: a stage
    takes effect with the server's next message, which has not come)."""
    today = date.fromisoformat(newest_event[:10]) if newest_event else None
    upcoming = []
    if today is not None:
        horizon = today + timedelta(days=UPCOMING_DAYS)
        by_number = {stage.number: stage for stage in stages}
        for row in servers:
            starts = row["next_stage_start_date"]
            if starts is None or date.fromisoformat(starts) > horizon:
                continue
            following = by_number.get(row["stage"] + 1)
            upcoming.append({
                "server_id": row["server_id"], "server": row["server"], "org": row["org"], "stage": row["stage"],
                "next_stage": following.number if following else None, "starts": starts,
                "due": date.fromisoformat(starts) <= today,
                "throttle_minutes": row["next_stage_throttle_rate"], "block_minutes": row["next_stage_block_rate"],
            })
        upcoming.sort(key=lambda change: (change["starts"], change["server"], change["org"] or ""))
    matrix = Counter((row["status"], row["stage"]) for row in servers)
    return {
        "newest_event": newest_event,
        "today": today.isoformat() if today else None,
        "servers": len(servers),
        "by_status": dict(sorted(Counter(row["status"] for row in servers).items())),
        "by_stage": {str(stage): n for stage, n in sorted(Counter(row["stage"] for row in servers).items())},
        "by_status_and_stage": [{"status": status, "stage": stage, "servers": n}
                                for (status, stage), n in sorted(matrix.items())],
        "upcoming_days": UPCOMING_DAYS,
        "upcoming": upcoming,
        "report_only": report_only(servers),
    }


def report_only(servers: list[dict]) -> dict:
    """The servers in report-only mode and what the MTAs would have done to their mail, per server,
    per org and in all: {"servers": [...], "orgs": [...], "would_defer": n, "would_reject": n}."""
    chosen = sorted((row for row in servers if row["report_only"]), key=lambda row: (row["org"] or "", row["server"]))
    listed = [{"server_id": row["server_id"], "server": row["server"], "org": row["org"], "stage": row["stage"],
               "would_defer": row["would_defer"] or 0, "would_reject": row["would_reject"] or 0} for row in chosen]
    orgs: dict[str | None, dict] = {}
    for row in listed:
        org = orgs.setdefault(row["org"], {"org": row["org"], "servers": 0, "would_defer": 0, "would_reject": 0})
        org["servers"] += 1
        org["would_defer"] += row["would_defer"]
        org["would_reject"] += row["would_reject"]
    return {"servers": listed, "orgs": list(orgs.values()),
            "would_defer": sum(row["would_defer"] for row in listed),
            "would_reject": sum(row["would_reject"] for row in listed)}
