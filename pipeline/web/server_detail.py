"""One server's report in plain words: what is wrong, what happens next and when, what to install.

Built from what pipeline.sinks.report_queries.server_page read; the page and /api/servers/<id>
show the same dict. The stages and their dates are the newest decision's schedule as the policy
computed it (pipeline.domain.schedule): the page only picks the step of its "today". The minutes
named are the MTA's predictable window (pipeline.domain.windows): from the server's offset on, the
block minutes first, then the throttle minutes.
"""
from __future__ import annotations

from datetime import datetime

from pipeline.domain.catalog import Catalog, CatalogBuild
from pipeline.domain.config import PolicyConfig
from pipeline.domain.hostnames import matches
from pipeline.domain.schedule import Schedule, Step, step_at
from pipeline.domain.windows import minutes_text, window_offset

KB_URL = "https://support.microsoft.com/help/{number}"
DEFERRED, REJECTED = "450 4.7.230", "550 5.7.230"


def server_detail(page: dict, policy: PolicyConfig, catalog: Catalog) -> dict:
    row = page["row"]
    decision = page["history"][-1] if page["history"] else {}
    steps = schedule_of(decision)
    # The page's "today" is the newest event the pipeline has seen, so that a replay shows the same.
    today = _moment(page["newest_event"] or decision.get("decided_at"))
    return {
        "server": row,
        "newest_event": page["newest_event"],
        "now": now_text(row, decision, steps, today),
        "next": next_text(row, steps, today),
        "last_message": last_message_text(row, decision, steps),
        "timeline": timeline(row, page["history"], steps, today),
        "recommended": [catalog_entry(build, catalog) for build in row["recommended_builds"]],
        "upgrade": upgrade_target(row, policy, catalog),
        "daily": page["daily"],
        "controls": controls_for(row, page["control"]),
        "history": page["history"],
    }


def schedule_of(decision: dict) -> Schedule:
    """The schedule of a decision as the report reads it (none before decisions carried one)."""
    return tuple(Step(_at(step["start"]), step["stage"], step["throttle_minutes_per_hour"],
                      step["block_minutes_per_hour"], step["paused"]) for step in decision.get("schedule") or ())


def _moment(text: str | None) -> datetime | None:
    return _at(text) if text else None


def _at(text: str) -> datetime:
    """A time as the report reads it (ISO, Z for UTC, which fromisoformat reads since Python 3.11)."""
    return datetime.fromisoformat(text)


def enforcement_text(server_id: str, throttle: int | None, block: int | None) -> str:
    """What a stage's rates do to this server's mail, e.g. "5 minutes of every hour are deferred
    (450 4.7.230): minutes 17 to 21 UTC"."""
    throttle, block = throttle or 0, block or 0
    offset = window_offset(server_id)
    parts = []
    if block:
        parts.append(f"{block} minutes of every hour are rejected ({REJECTED}): {minutes_text(offset, block)} UTC"
                     if block < 60 else f"all its mail is rejected ({REJECTED})")
    if throttle:
        parts.append(f"{throttle} minutes of every hour are deferred ({DEFERRED}): "
                     f"{minutes_text((offset + block) % 60, throttle)} UTC")
    return "; ".join(parts) if parts else "no mail is deferred or rejected (reported only)"


def now_text(row: dict, decision: dict, steps: Schedule, today: datetime | None) -> str:
    """The stage the schedule gives for today, with its rates; without a schedule, the decision's."""
    if row["stage"] == 0:
        return f"Not enforced: {row['reason']}."
    step = step_at(steps, today) if today else None
    if step is None:
        rates = decision.get("throttle_minutes_per_hour"), decision.get("block_minutes_per_hour")
        return f"Stage {row['stage']}: {enforcement_text(row['server_id'], *rates)}."
    held = " (its org's pause holds it at the first stage)" if step.paused else ""
    return (f"Stage {step.stage} since {step.start.date().isoformat()}{held}: "
            f"{enforcement_text(row['server_id'], step.throttle_minutes_per_hour, step.block_minutes_per_hour)}.")


def next_text(row: dict, steps: Schedule, today: datetime | None) -> str:
    """The schedule's next step after today."""
    coming = next((step for step in steps if today is None or step.start > today), None)
    if coming is None:
        if row["stage"] == 0 or not steps:
            return "Nothing: no enforcement is planned for this server."
        return "Nothing further: this is the last stage, it lasts until the server is patched."
    held = " while its org's pause lasts" if coming.paused else ""
    return (f"From {coming.start.date().isoformat()}, stage {coming.stage}{held}: "
            f"{enforcement_text(row['server_id'], coming.throttle_minutes_per_hour, coming.block_minutes_per_hour)}.")


def last_message_text(row: dict, decision: dict, steps: Schedule) -> str | None:
    """When the server was last seen, and the stage decided then where the schedule has moved on:
    the MTAs apply the schedule's stage for their own clock, not only the last message's."""
    if not row.get("last_seen"):
        return None
    seen = f"Its last message was seen on {row['last_seen'][:10]}"
    step = step_at(steps, _at(row["last_seen"])) if steps else None
    return f"{seen}, at stage {step.stage}." if step else f"{seen}."


def timeline(row: dict, history: list[dict], steps: Schedule, today: datetime | None) -> list[dict]:
    """Every step of the schedule with its start date: passed, current, paused, next or later."""
    current = step_at(steps, today) if today else None
    coming = next((step for step in steps if today is not None and step.start > today), None)
    this_cycle = [d for d in history if d["first_detected"] == row["first_detected"]]
    entries = []
    for step in steps:
        if step is current:
            state = "current"
        elif step is coming:
            state = "next"
        elif today is not None and step.start <= today:
            state = "passed"
        else:
            state = "later"
        applied = next((d["decided_at"] for d in this_cycle if d["stage"] == step.stage), None)
        entries.append({
            "stage": step.stage, "state": f"{state}, paused" if step.paused else state,
            "starts": step.start.date().isoformat(), "applied_since": applied,
            "throttle_minutes": step.throttle_minutes_per_hour, "block_minutes": step.block_minutes_per_hour,
            "text": enforcement_text(row["server_id"], step.throttle_minutes_per_hour, step.block_minutes_per_hour),
        })
    return entries


def catalog_entry(build: str, catalog: Catalog) -> dict:
    """A build with its release name, date and KB article, as far as the catalog knows them."""
    known: CatalogBuild | None = next((b for b in catalog.builds if str(b.build) == build), None)
    kb = known.kb if known else ""
    number = "".join(ch for ch in kb if ch.isdigit())
    return {
        "build": build, "product": known.product if known else None, "release": known.release if known else None,
        "release_date": known.release_date if known else None, "kb": kb or None,
        "kb_url": KB_URL.format(number=number) if number else None,
    }


def upgrade_target(row: dict, policy: PolicyConfig, catalog: Catalog) -> dict | None:
    """For a product out of support (no build of it helps): the newest build of a supported product."""
    if row["status"] != "unsupported":
        return None
    supported = {p for p in policy.baselines if p not in policy.vulnerable_products}
    newest = next((b for b in catalog.builds if b.product in supported), None)
    return catalog_entry(str(newest.build), catalog) if newest else None


def controls_for(row: dict, entries: list[dict]) -> list[dict]:
    """The pauses of the server's org and the exemptions whose pattern matches the server."""
    org, server = (row["org"] or "").lower(), row["server"].lower()

    def applies(entry: dict) -> bool:
        if entry["action"] in ("pause", "resume"):
            return bool(org) and entry["target"].lower() == org
        return matches(entry["target"], server)
    return [entry for entry in entries if applies(entry)]

