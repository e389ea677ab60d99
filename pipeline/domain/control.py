"""Control commands: an operator pauses an org's enforcement or exempts a server, without a restart.

Commands are read in one order (mail.control has one partition). `apply` folds each into the
Controls in force and says whether it was applied or refused, and why; the policy then sees the
config file's pauses and exemptions together with the granted ones (`in_force`).

    pause ORG      from a day (default: the day it was issued) for N days. The org's pauses, the
                   config file's and the granted ones, may cover at most `pause_budget_days` days
                   per calendar year; a pause that would go over is refused whole.
    resume ORG     ends the org's granted pauses on the day it was issued: that day and the
                   following ones are enforced again (and count no more against the budget).
    exempt SERVER  a server name or name pattern (hostnames.matches), until a day (the first one enforced again), at
                   most `max_exemption_days` after the day it was issued. A pattern that matches
                   every server (`*`, `*.*`) needs `all_servers`: it would switch enforcement off.
    unexempt       lifts a granted exemption of the same name or pattern.
    report-only ORG or * (the whole site): from now on the MTAs accept the mail of its servers and
                   record what they would have done; the stages go on as always. A rollout is the
                   site's decision, not the owner's request: the pause budget does not apply.
    enforce        ends a granted report-only mode of the same org (or of the whole site).

The config file's pauses, exemptions and report-only settings cannot be ended by a command: they
last as long as the file says. A command read again (its id already folded) changes nothing and gets its outcome again.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from pipeline.domain.config import SITE, Exemption, Pause, PolicyConfig
from pipeline.domain.hostnames import matches
from pipeline.domain.orgs import same_org
from pipeline.domain.pauses import pause_intervals

ACTIONS = ("pause", "resume", "exempt", "unexempt", "report-only", "enforce")
# Server names of the common shapes (short and long domain names, an IPv4 address): a pattern that
# matches them all matches (nearly) every server, as `*` and `*.*` do.
EVERY_KIND_OF_SERVER = ("mail.example", "mx1.mail.example.net", "192.0.2.25")
# Outcomes kept to answer a command read again; older ones are dropped (commands are rare).
KEPT_OUTCOMES = 1000


@dataclass(frozen=True)
class ControlCommand:
    command_id: str
    action: str
    # An org (pause, resume; report-only and enforce also SITE) or a server name or pattern (exempt,
    # unexempt), in lower case.
    target: str
    issued_at: datetime
    start: date | None = None
    days: int | None = None
    until: date | None = None
    reason: str = ""
    issued_by: str = ""
    # An exemption of every server, on purpose (see `matches_every_server`).
    all_servers: bool = False


@dataclass(frozen=True)
class Outcome:
    applied: bool
    detail: str


@dataclass(frozen=True)
class Controls:
    """What commands granted, and the outcomes of the latest commands by id."""

    pauses: tuple[Pause, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    outcomes: tuple[tuple[str, Outcome], ...] = ()
    # Orgs in report-only mode, SITE for the whole site.
    report_only: tuple[str, ...] = ()

    def in_force(self, config: PolicyConfig) -> PolicyConfig:
        """The policy with the config file's pauses, exemptions and report-only settings and the
        granted ones."""
        if not self.pauses and not self.exemptions and not self.report_only:
            return config
        return replace(config, pauses=config.pauses + self.pauses, granted_exemptions=self.exemptions,
                       granted_report_only=self.report_only)


def apply(controls: Controls, command: ControlCommand, config: PolicyConfig) -> tuple[Controls, Outcome]:
    """Fold one command into `controls` (applied, or refused with its reason)."""
    seen = dict(controls.outcomes)
    if command.command_id in seen:
        return controls, seen[command.command_id]
    granted, outcome = _apply(controls, command, config)
    kept = (*controls.outcomes, (command.command_id, outcome))[-KEPT_OUTCOMES:]
    return replace(granted if outcome.applied else controls, outcomes=kept), outcome


def _apply(controls: Controls, command: ControlCommand, config: PolicyConfig) -> tuple[Controls, Outcome]:
    target, today = command.target.lower(), command.issued_at.date()
    if command.action not in ACTIONS:
        return controls, Outcome(False, f"unknown action {command.action!r} (known: {', '.join(ACTIONS)})")
    if not target:
        return controls, Outcome(False, "no org or server named")
    if command.action == "pause":
        return _pause(controls, command, target, today, config)
    if command.action == "resume":
        return _resume(controls, target, today)
    if command.action == "report-only":
        return _report_only(controls, command, target, config)
    if command.action == "enforce":
        return _enforce(controls, target, config)
    if command.action == "exempt":
        if command.until is None or command.until <= today:
            return controls, Outcome(False, f"an exemption needs an end after {today.isoformat()}")
        latest = today + timedelta(days=config.max_exemption_days)
        if command.until > latest:
            return controls, Outcome(False, f"an exemption may last at most {config.max_exemption_days} days "
                                            f"(policy.max_exemption_days): until {latest.isoformat()} at the latest")
        if not command.reason:
            return controls, Outcome(False, "an exemption needs a reason")
        if matches_every_server(target) and not command.all_servers:
            return controls, Outcome(False, f"{target} matches every server and would switch enforcement off: "
                                            "name the servers, or say all_servers (--all-servers) if that is meant")
        kept = tuple(e for e in controls.exemptions if e.pattern != target)
        exemption = Exemption(target, command.until, command.reason)
        return (replace(controls, exemptions=(*kept, exemption)),
                Outcome(True, f"{target} exempt until {command.until.isoformat()}"))
    if any(matches(pattern, target) for pattern in config.exemptions):
        return controls, Outcome(False, f"{target} is exempt by the config file (policy.exemptions)")
    kept = tuple(e for e in controls.exemptions if e.pattern != target)
    if len(kept) == len(controls.exemptions):
        return controls, Outcome(False, f"{target} has no exemption to lift")
    return replace(controls, exemptions=kept), Outcome(True, f"exemption of {target} lifted")


def matches_every_server(pattern: str) -> bool:
    return all(matches(pattern, name) for name in EVERY_KIND_OF_SERVER)


def _pause(controls: Controls, command: ControlCommand, org: str, today: date,
           config: PolicyConfig) -> tuple[Controls, Outcome]:
    if command.days is None or command.days < 1:
        return controls, Outcome(False, "a pause needs a number of days (1 or more)")
    if not command.reason:
        return controls, Outcome(False, "a pause needs a reason")
    start = command.start or today
    already = _paused_days(controls.in_force(config), org)
    asked = {start + timedelta(days=offset) for offset in range(command.days)}
    used = Counter(day.year for day in already)
    added = Counter(day.year for day in asked - already)
    for year in sorted(added):
        if used[year] + added[year] > config.pause_budget_days:
            left = max(config.pause_budget_days - used[year], 0)
            return controls, Outcome(False, f"over budget: {org} has {left} of {config.pause_budget_days} pause "
                                            f"days left in {year}, the pause needs {added[year]} more")
    end = start + timedelta(days=command.days)
    return (replace(controls, pauses=(*controls.pauses, Pause(org, start, command.days))),
            Outcome(True, f"{org} paused from {start.isoformat()} until {end.isoformat()}"))


def _resume(controls: Controls, org: str, today: date) -> tuple[Controls, Outcome]:
    kept, cut = [], False
    for pause in controls.pauses:
        if not same_org(pause.org, org) or pause.start + timedelta(days=pause.days) <= today:
            kept.append(pause)
            continue
        cut = True
        if pause.start < today:
            kept.append(replace(pause, days=(today - pause.start).days))
    if not cut:
        return controls, Outcome(False, f"{org} has no granted pause to end on or after {today.isoformat()}")
    return replace(controls, pauses=tuple(kept)), Outcome(True, f"{org} enforced again from {today.isoformat()}")


def _report_only(controls: Controls, command: ControlCommand, target: str,
                 config: PolicyConfig) -> tuple[Controls, Outcome]:
    if not command.reason:
        return controls, Outcome(False, "report-only mode needs a reason")
    by = _report_only_by(config, controls, target)
    if by:
        return controls, Outcome(False, f"{_named(target)} is in report-only mode already, by {by}")
    return (replace(controls, report_only=(*controls.report_only, target)),
            Outcome(True, f"{_named(target)} in report-only mode: the MTAs accept and record what they would do"))


def _enforce(controls: Controls, target: str, config: PolicyConfig) -> tuple[Controls, Outcome]:
    by = _report_only_by(config, Controls(), target)
    if by:
        return controls, Outcome(False, f"{_named(target)} is in report-only mode by the config file ({by})")
    if target not in controls.report_only:
        whole_site = SITE in controls.report_only
        return controls, Outcome(False, f"{_named(target)} has no report-only mode of its own to end"
                                        + ("; the whole site's ends with `enforce *`" if whole_site else ""))
    kept = tuple(org for org in controls.report_only if org != target)
    return replace(controls, report_only=kept), Outcome(True, f"{_named(target)} enforced again")


def _report_only_by(config: PolicyConfig, controls: Controls, target: str) -> str | None:
    """What puts `target` (an org or SITE) in report-only mode: for SITE, only a site-wide setting
    (an org named nowhere)."""
    return controls.in_force(config).report_only_by(None if target == SITE else target)


def _named(target: str) -> str:
    return "the whole site" if target == SITE else target


def _paused_days(config: PolicyConfig, org: str) -> set[date]:
    days = set()
    for begin, end in pause_intervals(config, org):
        day = begin.date()
        while day < end.date():
            days.add(day)
            day += timedelta(days=1)
    return days
