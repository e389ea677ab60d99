"""Which notices are due to server owners, and what they say.

    due_notices(decisions, ledger, now, config) -> DueNotices

A server's owners hear about it when it enters a new stage (its stage differs from the one they
were last told about; the first notice goes out once a vulnerable server is at stage 1 or
above), and `lead_days` before throttling or blocking starts. Each of these is an event with an
id; the ledger holds the events already notified, so each goes out once per server. A notice
due for several events at once (a server entering stage 1 a few days before its throttling
starts) is one mail that covers them all.

`now` is an argument: nothing here reads a clock (see pipeline.edges.notify for why the warnings
are timed by one).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from pipeline.domain.catalog import UNSUPPORTED, VULNERABLE_STATUSES
from pipeline.domain.notify_config import NotifyConfig
from pipeline.domain.policy import Decision
from pipeline.domain.windows import minutes_text, window_offset

THROTTLE_WARNING, BLOCK_WARNING = "throttle-warning", "block-warning"


@dataclass(frozen=True)
class SentNotice:
    """One event notified for a server: a record of the ledger. `stage` and `version` are those of
    the decision the notice told about."""

    server_id: str
    event: str
    stage: int
    version: int

    @property
    def key(self) -> str:
        return ledger_key(self.server_id, self.event)

    def to_json(self) -> dict:
        return {"server_id": self.server_id, "event": self.event, "stage": self.stage, "version": self.version}

    @classmethod
    def from_json(cls, data: dict) -> SentNotice:
        """Raises KeyError or TypeError for a record that is not one."""
        return cls(str(data["server_id"]), str(data["event"]), int(data["stage"]), int(data["version"]))


def ledger_key(server_id: str, event: str) -> str:
    return f"{server_id}|{event}"


@dataclass
class Ledger:
    """The events notified so far, and per server the stage its owners were last told about."""

    events: set[str] = field(default_factory=set)
    # server_id -> (decision version, stage) of the newest notice.
    told: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, sent: SentNotice) -> None:
        self.events.add(sent.key)
        # Every notice tells the server's current stage, so the newest one says what they know.
        if sent.server_id not in self.told or sent.version >= self.told[sent.server_id][0]:
            self.told[sent.server_id] = (sent.version, sent.stage)

    def stage_told(self, server_id: str) -> int | None:
        told = self.told.get(server_id)
        return told[1] if told else None


@dataclass(frozen=True)
class Notice:
    """One mail: to the server's org's contacts, covering `events`."""

    decision: Decision
    recipients: tuple[str, ...]
    events: tuple[str, ...]
    subject: str
    body: str

    def sent(self) -> list[SentNotice]:
        """What the ledger keeps once the mail went out."""
        d = self.decision
        return [SentNotice(d.server_id, event, d.stage, d.version) for event in self.events]


@dataclass(frozen=True)
class DueNotices:
    notices: list[Notice]
    # Orgs (None: servers without one) with notices due but no contacts: nothing was sent for them.
    uncontacted: set[str | None]


def due_notices(decisions: Iterable[Decision], ledger: Ledger, now: datetime, config: NotifyConfig) -> DueNotices:
    """The notices due at `now` for the newest decision of each server, one per server at most."""
    today = now.astimezone(UTC).date()
    notices: list[Notice] = []
    uncontacted: set[str | None] = set()
    for decision in decisions:
        events = _due_events(decision, ledger, today, config.lead_days)
        if not events:
            continue
        recipients = config.contacts_of(decision.org)
        if not recipients:
            uncontacted.add(decision.org.lower() if decision.org else None)
            continue
        warnings = [event for event in events if event.startswith((THROTTLE_WARNING, BLOCK_WARNING))]
        subject = _subject(decision, entered=stage_event(decision) in events, warnings=warnings)
        notices.append(Notice(decision, recipients, tuple(events), subject, _body(decision, config.report_url)))
    return DueNotices(notices, uncontacted)


def stage_event(decision: Decision) -> str:
    # The version makes each entry into a stage an event of its own (a server may come back to it).
    return f"stage-{decision.stage}-v{decision.version}"


def warning_event(kind: str, starts: date) -> str:
    return f"{kind}-{starts.isoformat()}"


def _due_events(decision: Decision, ledger: Ledger, today: date, lead_days: int) -> list[str]:
    told = ledger.stage_told(decision.server_id)
    entered = decision.stage != told if told is not None else (
        decision.stage >= 1 and decision.status in VULNERABLE_STATUSES)
    events = [stage_event(decision)] if entered else []
    for kind, starts in ((THROTTLE_WARNING, decision.throttle_enabled_date),
                         (BLOCK_WARNING, decision.blocking_enabled_date)):
        if starts is not None and starts - timedelta(days=lead_days) <= today < starts:
            events.append(warning_event(kind, starts))
    return [event for event in events if ledger_key(decision.server_id, event) not in ledger.events]


def _subject(decision: Decision, entered: bool, warnings: list[str]) -> str:
    parts = []
    if entered:
        parts.append(_stage_headline(decision))
    if warnings:
        # The first due warning is the sooner: throttling never starts after blocking.
        kind = "throttling" if warnings[0].startswith(THROTTLE_WARNING) else "blocking"
        starts = decision.throttle_enabled_date if kind == "throttling" else decision.blocking_enabled_date
        assert starts is not None, "a warning is due only for a start date"
        parts.append(f"{kind} starts {starts.isoformat()}")
    return f"[patchgate] {decision.hostname}: {'; '.join(parts)}"


def _stage_headline(decision: Decision) -> str:
    headline = _stage_effect(decision)
    return f"{headline} (report-only for now)" if decision.report_only and decision.stage else headline


def _stage_effect(decision: Decision) -> str:
    if decision.stage == 0:
        return "no longer enforced"
    if decision.block_minutes_per_hour:
        return f"stage {decision.stage}, mail rejected {decision.block_minutes_per_hour} min/hr"
    if decision.throttle_minutes_per_hour:
        return f"stage {decision.stage}, mail deferred {decision.throttle_minutes_per_hour} min/hr"
    return f"{_software(decision)} is {decision.status}, report only"


def _body(decision: Decision, report_url: str) -> str:
    d = decision
    lines = [
        f"Server:   {d.hostname}" + (f" (organisation {d.org})" if d.org else ""),
        f"Software: {_software(d)}",
        f"Status:   {d.status}",
        f"Why:      {d.reason}",
    ]
    if d.first_detected:
        lines.append(f"First detected: {d.first_detected.astimezone(UTC).date().isoformat()}")
    lines += ["", f"Now (stage {d.stage}): {_treatment(d, d.throttle_minutes_per_hour, d.block_minutes_per_hour)}."]
    if d.report_only:
        lines.append("For now the site runs in report-only mode: your mail is delivered, and what would have "
                     "been deferred or rejected is recorded.")
    if d.next_stage_start_date:
        following = _treatment(d, d.next_stage_throttle_rate or 0, d.next_stage_block_rate or 0)
        lines.append(f"Next, from {d.next_stage_start_date.isoformat()}: {following}.")
    if d.throttle_enabled_date:
        lines.append(f"Throttling (450 4.7.230) from {d.throttle_enabled_date.isoformat()}.")
    if d.blocking_enabled_date:
        lines.append(f"Blocking (550 5.7.230) from {d.blocking_enabled_date.isoformat()}.")
    lines.append("")
    if d.recommended_builds:
        lines.append(f"To end this, install one of these builds (newest first): {', '.join(d.recommended_builds)}.")
    elif d.status == UNSUPPORTED:
        lines.append(f"To end this, move the server to a supported product: {d.product or 'its product'} "
                     "is out of support.")
    elif d.status in VULNERABLE_STATUSES:
        lines.append("To end this, install the product's latest update.")
    lines += ["", f"The server's page: {report_url.rstrip('/')}/servers/{quote(d.server_id, safe='/@')}", ""]
    return "\n".join(lines)


def _software(decision: Decision) -> str:
    return " ".join(part for part in (decision.product, decision.build) if part) or "unknown software"


def _treatment(decision: Decision, throttle: int, block: int) -> str:
    """What happens to the server's mail at these rates, in plain words with the minutes of the hour
    (windows start at the server's offset: blocked minutes first, then deferred ones)."""
    if not throttle and not block:
        return "its mail is delivered as usual" + (" (reported only)" if decision.stage else "")
    offset = window_offset(decision.server_id)
    said = []
    if block:
        said.append(f"{_minutes(block)} rejected with 550 5.7.230 ({_window(offset, block)})")
    if throttle:
        said.append(f"{_minutes(throttle)} deferred with 450 4.7.230 ({_window(offset + block, throttle)})")
    return " and ".join(said)


def _minutes(count: int) -> str:
    return "every minute of the hour is" if count >= 60 else f"{count} minutes of every hour are"


def _window(start: int, count: int) -> str:
    return "all hour" if count >= 60 else f"{minutes_text(start % 60, count)} UTC"
