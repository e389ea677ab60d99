"""One server's report in plain words: what is wrong, what happens next and when, what to install.

Built from what pipeline.sinks.report_queries.server_page read; the page and /api/servers/<id>
show the same dict. The minutes named are the MTA's predictable window (pipeline.domain.windows):
from the server's offset on, the block minutes first, then the throttle minutes.
"""
from __future__ import annotations

from datetime import date, timedelta

from pipeline.domain.catalog import Catalog, CatalogBuild
from pipeline.domain.config import PolicyConfig, Stage
from pipeline.domain.hostnames import matches
from pipeline.domain.windows import minutes_text, window_offset

KB_URL = "https://support.microsoft.com/help/{number}"
DEFERRED, REJECTED = "450 4.7.230", "550 5.7.230"


def server_detail(page: dict, policy: PolicyConfig, catalog: Catalog) -> dict:
    row = page["row"]
    following = following_stage(row, policy.stages)
    stages = timeline(row, page["history"], policy.stages, following)
    return {
        "server": row,
        "newest_event": page["newest_event"],
        "now": now_text(row, page["history"], stages),
        "next": next_text(row, following),
        "timeline": stages,
        "recommended": [catalog_entry(build, catalog) for build in row["recommended_builds"]],
        "upgrade": upgrade_target(row, policy, catalog),
        "daily": page["daily"],
        "controls": controls_for(row, page["control"]),
        "history": page["history"],
    }


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


def now_text(row: dict, history: list[dict], stages: list[dict]) -> str:
    """The current stage in words, with the rates of the decision in force (the newest version)."""
    if row["stage"] == 0:
        return f"Not enforced: {row['reason']}."
    current = history[-1] if history else {}
    since = next((f" since {entry['starts']}" for entry in stages if entry["state"] == "current"), "")
    rates = current.get("throttle_minutes_per_hour"), current.get("block_minutes_per_hour")
    return f"Stage {row['stage']}{since}: {enforcement_text(row['server_id'], *rates)}."


def next_text(row: dict, following: Stage | None) -> str:
    starts = row["next_stage_start_date"]
    if starts is None:
        if row["stage"] == 0:
            return "Nothing: no enforcement is planned for this server."
        return "Nothing further: this is the last stage, it lasts until the server is patched."
    number = following.number if following else row["stage"] + 1
    return (f"From {starts}, stage {number}: "
            f"{enforcement_text(row['server_id'], row['next_stage_throttle_rate'], row['next_stage_block_rate'])}.")


def following_stage(row: dict, stages: tuple[Stage, ...]) -> Stage | None:
    """The stage that starts on the decision's next-stage date. Not always the one after the
    decision's stage: while its org is paused a server is held at stage 1 and its clock runs on
    later. The stage with the next rates whose plain day count is the latest not after that date
    (a pause only ever moves a stage later)."""
    starts = row["next_stage_start_date"]
    if starts is None or row["first_detected"] is None:
        return None
    detected = date.fromisoformat(row["first_detected"][:10])
    rates = (row["next_stage_throttle_rate"] or 0, row["next_stage_block_rate"] or 0)
    fitting = [s for s in stages if s.number > row["stage"] and (s.throttle_minutes, s.block_minutes) == rates
               and detected + timedelta(days=s.start_day) <= date.fromisoformat(starts)]
    return max(fitting, key=lambda s: s.start_day, default=next((s for s in stages if s.number == row["stage"] + 1),
                                                                None))


def timeline(row: dict, history: list[dict], stages: tuple[Stage, ...], following: Stage | None) -> list[dict]:
    """Every stage of the running enforcement cycle with its start date: passed, current, held back
    by a pause, next or later. Later stages are projected from the next one's date (a pause or a
    patch changes them)."""
    if row["first_detected"] is None:
        return []
    detected = date.fromisoformat(row["first_detected"][:10])
    # Where the stage clock is: ahead of the decision's stage while a pause holds the server back.
    reached = following.number - 1 if following else row["stage"]
    # How far pauses pushed the next stage beyond its plain day count; later stages move as much.
    shift = timedelta()
    if following and row["next_stage_start_date"]:
        shift = date.fromisoformat(row["next_stage_start_date"]) - (detected + timedelta(days=following.start_day))
    this_cycle = [d for d in history if d["first_detected"] == row["first_detected"]]
    entries = []
    for stage in stages:
        if stage.number == row["stage"]:
            state, starts = "current", detected + timedelta(days=stage.start_day)
        elif stage.number < reached:
            state, starts = "passed", detected + timedelta(days=stage.start_day)
        elif stage.number == reached:
            state, starts = "held back by the pause", detected + timedelta(days=stage.start_day)
        else:
            state = "next" if following and stage.number == following.number else "later"
            starts = detected + timedelta(days=stage.start_day) + shift
        applied = next((d["decided_at"] for d in this_cycle if d["stage"] == stage.number), None)
        entries.append({
            "stage": stage.number, "state": state, "starts": starts.isoformat(), "applied_since": applied,
            "throttle_minutes": stage.throttle_minutes, "block_minutes": stage.block_minutes,
            "text": enforcement_text(row["server_id"], stage.throttle_minutes, stage.block_minutes),
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

