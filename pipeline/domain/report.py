"""The per-server output contract of `patchgate evaluate` (and of the demo's decision lines)."""
from __future__ import annotations

from datetime import UTC, date, datetime

from pipeline.domain.policy import Decision

EVALUATE_KEYS = (
    "server", "org", "product", "build", "status", "first_detected", "stage",
    "throttle_minutes_per_hour", "block_minutes_per_hour", "throttle_enabled_date",
    "blocking_enabled_date", "next_stage_start_date", "recommended_builds", "reason",
)


def evaluate_row(decision: Decision) -> dict:
    return {
        "server": decision.hostname,
        "org": decision.org,
        "product": decision.product,
        "build": decision.build,
        "status": decision.status,
        "first_detected": iso_utc(decision.first_detected),
        "stage": decision.stage,
        "throttle_minutes_per_hour": decision.throttle_minutes_per_hour,
        "block_minutes_per_hour": decision.block_minutes_per_hour,
        "throttle_enabled_date": iso_date(decision.throttle_enabled_date),
        "blocking_enabled_date": iso_date(decision.blocking_enabled_date),
        "next_stage_start_date": iso_date(decision.next_stage_start_date),
        "recommended_builds": list(decision.recommended_builds),
        "reason": decision.reason,
    }


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def iso_date(day: date | None) -> str | None:
    return day.isoformat() if day else None
