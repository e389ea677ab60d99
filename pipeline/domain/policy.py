"""The enforcement policy as a pure state machine.

    step(state, observation, config, catalog) -> (state, decision or None)

The Faust agent and `patchgate evaluate` both call `step`, and `assess` answers "what is the
decision for this server at time T" without an observation (for `--at` and the report).
Time is always event time: nothing here reads a clock.
"""
from __future__ import annotations

from copy import copy
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time
from typing import Any

from pipeline.domain.builds import Build
from pipeline.domain.catalog import CURRENT, UNKNOWN, UNSUPPORTED, VULNERABLE_STATUSES, Catalog, line_of, product_of
from pipeline.domain.config import PolicyConfig, Stage
from pipeline.domain.events import ServerObservation, epoch_ms, from_epoch_ms
from pipeline.domain.pauses import pause_intervals, paused_at
from pipeline.domain.schedule import Schedule, schedule, stage_at, stage_start, step_at
from pipeline.domain.windows import block_reply, throttle_reply


@dataclass(frozen=True)
class Decision:
    server_id: str
    org: str | None
    hostname: str
    product: str | None
    build: str | None
    status: str
    stage: int
    throttle_minutes_per_hour: int
    block_minutes_per_hour: int
    first_detected: datetime | None
    throttle_enabled_date: date | None
    blocking_enabled_date: date | None
    next_stage_start_date: date | None
    next_stage_throttle_rate: int | None
    next_stage_block_rate: int | None
    recommended_builds: tuple[str, ...]
    reason: str
    smtp_reply: str | None
    decided_at: datetime
    version: int = 0
    # Report-only rollout (site or org): the MTAs accept the server's mail and record what the
    # stage would have done. Set only where an enforcement clock runs.
    report_only: bool = False
    # Where an enforcement clock runs, from which moment each stage applies (pauses included):
    # what the MTAs apply at their wall-clock time and the pages render (pipeline.domain.schedule).
    schedule: Schedule = ()


@dataclass
class ServerState:
    """What the policy remembers per server: the value of the first-seen table.

    Every field is a function of the observations folded, whatever order they came in: the stream
    folds them as partitions deliver them, `evaluate` in event-time order, and both must agree.
    Where the newest sighting wins, the event time it was seen at is kept beside it.
    """

    server_id: str
    server: str
    org: str | None
    # build -> newest event time (epoch ms) it was stamped, within the build window.
    builds: dict[str, int] = field(default_factory=dict)
    # When the enforcement clock started (see `_clock_start`), derived from the fields below.
    first_detected_ms: int | None = None
    last_event_ms: int | None = None
    version: int = 0
    last_decision: str | None = None
    # Product of a non-Exchange MTA (its builds are versions like 4.96): the newest one named.
    software: str | None = None
    # Seen connecting directly at least once; else only behind `relay` (the newest one), and
    # reported at most.
    direct: bool = False
    relay: str | None = None
    # Seen on an inbound path of the enforcement scope at least once; else reported only, and the
    # clock does not start.
    in_scope: bool = False
    # What the last decision was computed from, and the event time until which the passage of
    # time alone cannot change it (next stage, pause start or end): lets most events skip `assess`.
    decided_from: str | None = None
    stable_until_ms: int | None = None
    # The event times that set `software` and `relay` (None in states written before they were kept).
    software_ms: int | None = None
    relay_ms: int | None = None
    # The first event time seen in scope (None with `in_scope` set: a state from before it was kept).
    in_scope_since_ms: int | None = None
    # The newest sighting of a current build, and the spans of vulnerable sightings after it: each
    # (first, last) groups sightings at most the build window apart (see `_with_sighting`).
    healthy_ms: int | None = None
    vulnerable_spans: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict:
        # Field by field: asdict deep-copies, and a batch encodes thousands of states.
        return {name: getattr(self, name) for name in _STATE_FIELDS}

    @classmethod
    def from_json(cls, data: dict) -> ServerState:
        # States written before the scope existed came from traffic on every path, all in scope then.
        state = cls(**{"in_scope": True, **data})
        if "vulnerable_spans" in data:
            state.vulnerable_spans = [(first, last) for first, last in data["vulnerable_spans"]]
        elif state.first_detected_ms is not None:
            # Written before the spans were kept: vulnerable since the clock started.
            state.vulnerable_spans = [(state.first_detected_ms, state.last_event_ms or state.first_detected_ms)]
        return state

    @property
    def effective_build(self) -> Build | None:
        return max(filter(None, map(Build.parse, self.builds)), default=None)


def observe(
    state: ServerState | None, observation: ServerObservation, config: PolicyConfig, catalog: Catalog
) -> ServerState:
    """Fold an observation into the server's state (no decision yet: see `decide`).

    An observation stands for `count` sightings between its first and last event time; folding
    the first and the last is what folding each would leave behind, apart from stage changes
    that are noticed at the last instead of at one in between. The order observations come in
    changes nothing: each field keeps the newest, the oldest or all of what it needs.
    """
    if state is None:
        state = ServerState(observation.server_id, observation.server, observation.org)
    else:
        state = copy(state)
        state.builds = dict(state.builds)
    first_ms, last_ms = epoch_ms(observation.first_seen), epoch_ms(observation.last_seen)
    build = Build.parse(observation.build)
    status = catalog.status(_product(observation.software, build), build, config)
    window_ms = config.build_window_days * 86_400_000
    _fold(state, observation, status, first_ms, window_ms)
    if last_ms != first_ms:
        _fold(state, observation, status, last_ms, window_ms)
    state.vulnerable_spans = _after_healthy(state.vulnerable_spans, state.healthy_ms, window_ms)
    state.first_detected_ms = _clock_start(state, window_ms)
    return state


def decide(state: ServerState, config: PolicyConfig, catalog: Catalog) -> tuple[ServerState, Decision | None]:
    """The decision as of the server's newest event, when it differs from the last one published."""
    last_event_ms = state.last_event_ms
    assert last_event_ms is not None, "a state is decided once `observe` folded an event into it"
    effective = state.effective_build
    inputs = repr((str(effective), state.first_detected_ms, state.direct, state.relay, state.software, state.org,
                   state.in_scope, config.controls_of(state.org, state.server)))
    if inputs == state.decided_from and (state.stable_until_ms is None or last_event_ms < state.stable_until_ms):
        return state, None
    state = copy(state)
    at = from_epoch_ms(last_event_ms)
    decision = assess(state, at, config, catalog)
    state.decided_from = inputs
    state.stable_until_ms = _next_change_ms(state, at, config, catalog)
    fingerprint = _fingerprint(decision)
    if fingerprint == state.last_decision:
        return state, None
    state.version += 1
    state.last_decision = fingerprint
    return state, replace(decision, version=state.version)


def step(
    state: ServerState | None, observation: ServerObservation, config: PolicyConfig, catalog: Catalog
) -> tuple[ServerState, Decision | None]:
    """Fold one observation and decide: `observe` then `decide`."""
    return decide(observe(state, observation, config, catalog), config, catalog)


def _fold(state: ServerState, observation: ServerObservation, status: str, at_ms: int, window_ms: int) -> None:
    """One sighting at `at_ms`; `status` is what the observation's own build and software say."""
    last_event_ms = state.last_event_ms = max(state.last_event_ms or at_ms, at_ms)
    if observation.build is not None:
        state.builds[observation.build] = max(state.builds.get(observation.build, at_ms), at_ms)
    if observation.software and _newer(at_ms, observation.software, state.software_ms, state.software):
        state.software, state.software_ms = observation.software, at_ms
    if observation.behind_relay is None:
        state.direct = True
    elif _newer(at_ms, observation.behind_relay, state.relay_ms, state.relay):
        state.relay, state.relay_ms = observation.behind_relay, at_ms
    if observation.in_scope:
        if not state.in_scope:
            state.in_scope_since_ms = at_ms
        elif state.in_scope_since_ms is not None:
            # (Without it, the state came from before the time was kept: in scope since ever.)
            state.in_scope_since_ms = min(state.in_scope_since_ms, at_ms)
        state.in_scope = True
    _forget_old_builds(state, last_event_ms, window_ms)
    if status == CURRENT:
        state.healthy_ms = at_ms if state.healthy_ms is None else max(state.healthy_ms, at_ms)
    elif status in VULNERABLE_STATUSES:
        state.vulnerable_spans = _with_sighting(state.vulnerable_spans, at_ms, window_ms)


def _newer(at_ms: int, value: str, kept_ms: int | None, kept: str | None) -> bool:
    """Whether a value seen at `at_ms` replaces the kept one: the newer wins, the greater on a tie
    (never the one that came last), and any beats one kept without its time (an older state)."""
    return kept is None or kept_ms is None or (at_ms, value) > (kept_ms, kept)


def _with_sighting(spans: list[tuple[int, int]], at_ms: int, window_ms: int) -> list[tuple[int, int]]:
    """The spans with one more vulnerable sighting: sightings at most the build window apart
    share a span, as the vulnerable build stays in the window from one to the next."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted([*spans, (at_ms, at_ms)]):
        if merged and first - merged[-1][1] <= window_ms:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _after_healthy(spans: list[tuple[int, int]], healthy_ms: int | None, window_ms: int) -> list[tuple[int, int]]:
    """The spans of the vulnerable sightings after the newest current one.

    Only whether one came within the build window after it, and the spans after that, decide
    anything (see `_clock_start`), now or after a newer current sighting: so a span reaching into
    that window starts just after the current sighting, whether it started before or inside it.
    Kept that way, the spans are the same whatever order the sightings came in.
    """
    if healthy_ms is None:
        return spans
    after = [(first, last) for first, last in spans if last > healthy_ms]
    if after and after[0][0] <= healthy_ms + window_ms:
        after[0] = (healthy_ms + 1, after[0][1])
    return after


def _clock_start(state: ServerState, window_ms: int) -> int | None:
    """When the server turned vulnerable after its newest current sighting, once seen in scope.

    Before any current build, that is the first vulnerable sighting. After one, vulnerable builds
    stamped within the build window do not count (a patched server's pickup folder stamps its
    old CU): if there were some, the server turned vulnerable as the current build left the
    window; else at the first vulnerable sighting after it. None until that moment has come.
    """
    if not state.in_scope or not state.vulnerable_spans:
        return None
    start = state.vulnerable_spans[0][0]
    if state.healthy_ms is not None and start <= state.healthy_ms + window_ms:
        start = state.healthy_ms + window_ms + 1
    if state.in_scope_since_ms is not None:
        start = max(start, state.in_scope_since_ms)
    assert state.last_event_ms is not None, "a state with spans has folded an event"
    return start if start <= state.last_event_ms else None


def assess(state: ServerState, at: datetime, config: PolicyConfig, catalog: Catalog) -> Decision:
    """The decision for a server as of event time `at`."""
    build = state.effective_build
    product = _product(state.software, build)
    status = catalog.status(product, build, config)
    # The fields every decision has, whatever its stage.
    base: dict[str, Any] = {
        "server_id": state.server_id,
        "org": state.org,
        "hostname": state.server,
        "product": product,
        "build": str(build) if build else None,
        "status": status,
        "recommended_builds": tuple(catalog.recommended_builds(product, config)),
        "decided_at": at,
        "version": state.version,
    }
    exemption = config.is_exempt(state.server, at)
    if exemption:
        return _not_enforced(base, f"exempt: matches {exemption}")
    if status in VULNERABLE_STATUSES and not state.in_scope:
        vulnerable = _vulnerable_reason(status, product, build, at, config, catalog)
        return _not_enforced(base, f"{vulnerable}; outside the enforcement scope, report only")
    if status not in VULNERABLE_STATUSES:
        return _not_enforced(base, _healthy_reason(status, product, build, at, catalog))
    if state.first_detected_ms is None:
        # The build or product that makes it vulnerable came only with sightings whose own build and
        # software were not (contradictory names), or the clock starts after `at`: nothing to count from.
        vulnerable = _vulnerable_reason(status, product, build, at, config, catalog)
        return _not_enforced(base, f"{vulnerable}; no vulnerable sighting of its own since its last current one "
                                   "starts the clock, report only")

    first = from_epoch_ms(state.first_detected_ms)
    limits = []
    if not config.in_enforcement_scope(product):
        limits.append(f"{product} is outside enforce_products, report only")
    if not state.direct and state.relay:
        limits.append(f"behind relay {state.relay}, report only")
    stages = config.stages[:1] if limits else config.stages
    pauses = pause_intervals(config, state.org)
    enforced, following, _ = stage_at(stages, first, pauses, at)
    reason = "; ".join([_vulnerable_reason(status, product, build, at, config, catalog)] + limits)
    pause = paused_at(pauses, at)
    if pause:
        reason += f"; enforcement paused until {pause[1].date().isoformat()}"
    report_only = config.report_only_by(state.org)
    if report_only:
        reason += f"; report-only rollout ({report_only}): the MTAs accept its mail and record what they would do"

    def day(stage: Stage | None) -> date | None:
        return stage_start(first, stage, pauses).date() if stage else None

    return Decision(
        **base,
        stage=enforced.number,
        throttle_minutes_per_hour=enforced.throttle_minutes,
        block_minutes_per_hour=enforced.block_minutes,
        first_detected=first,
        throttle_enabled_date=day(next((s for s in stages if s.throttle_minutes > 0), None)),
        blocking_enabled_date=day(next((s for s in stages if s.block_minutes > 0), None)),
        next_stage_start_date=day(following),
        next_stage_throttle_rate=following.throttle_minutes if following else None,
        next_stage_block_rate=following.block_minutes if following else None,
        reason=reason,
        smtp_reply=_reply(enforced),
        report_only=report_only is not None,
        schedule=schedule(stages, first, pauses),
    )


def _next_change_ms(state: ServerState, at: datetime, config: PolicyConfig, catalog: Catalog) -> int | None:
    """The first event time after `at` at which the same inputs could give another decision: a
    stage or pause edge, or the product's end of support (its reasons say so from then on)."""
    moments = []
    product = _product(state.software, state.effective_build)
    ends = [_support_end(product, catalog), _security_updates_end(product, catalog)]
    for end in filter(None, ends):
        day = date.fromisoformat(end if len(end) == 10 else f"{end}-01")
        moments.append(datetime.combine(day, time(), at.tzinfo))
    moments += [datetime.combine(day, time(), at.tzinfo) for day in config.exemption_ends(state.server)]
    if state.first_detected_ms is not None:
        first = from_epoch_ms(state.first_detected_ms)
        pauses = pause_intervals(config, state.org)
        moments += [stage_start(first, stage, pauses) for stage in config.stages]
        moments += [edge for interval in pauses for edge in interval]
    later = [m for m in moments if m > at]
    return epoch_ms(min(later)) if later else None


def _reply(stage: Stage) -> str | None:
    return reply(stage.throttle_minutes, stage.block_minutes)


def reply(throttle_minutes: int, block_minutes: int) -> str | None:
    """The SMTP reply a stage with these windows gives in its harshest one."""
    if block_minutes:
        return block_reply(block_minutes)
    if throttle_minutes:
        return throttle_reply(throttle_minutes)
    return None


def in_force(decision: Decision, at: datetime) -> Decision:
    """The decision as it applies at `at`: with the stage its schedule gives then, which may be a
    later one than the stage decided at the server's newest event (its mail stays blocked or
    throttled on the schedule's dates without waiting for another message). A decision without a
    schedule (no enforcement clock) applies as it is."""
    step = step_at(decision.schedule, at)
    if step is None or (step.stage, step.throttle_minutes_per_hour, step.block_minutes_per_hour) == (
            decision.stage, decision.throttle_minutes_per_hour, decision.block_minutes_per_hour):
        return decision
    return replace(decision, stage=step.stage, throttle_minutes_per_hour=step.throttle_minutes_per_hour,
                   block_minutes_per_hour=step.block_minutes_per_hour,
                   smtp_reply=reply(step.throttle_minutes_per_hour, step.block_minutes_per_hour))


def _not_enforced(base: dict[str, Any], reason: str) -> Decision:
    return Decision(
        **base,
        stage=0,
        throttle_minutes_per_hour=0,
        block_minutes_per_hour=0,
        first_detected=None,
        throttle_enabled_date=None,
        blocking_enabled_date=None,
        next_stage_start_date=None,
        next_stage_throttle_rate=None,
        next_stage_block_rate=None,
        reason=reason,
        smtp_reply=None,
    )


def _healthy_reason(status: str, product: str | None, build: Build | None, at: datetime, catalog: Catalog) -> str:
    if status == CURRENT and build is not None:
        passed = catalog.ahead_of_catalog(product, build)
        if passed is None:
            reason = f"build {build} is current"
        else:
            known = "its line" if line_of(passed) == line_of(build) else product
            reason = (f"build {build} is newer than every build the catalog knows of {known} (newest {passed}): "
                      "the catalog does not know it yet")
        return reason + _support_ended(product, at, catalog)
    if status == UNKNOWN and build is None:
        return "no build seen"
    return f"build {build} has no rule in the catalog"


def _vulnerable_reason(
    status: str, product: str | None, build: Build | None, at: datetime, config: PolicyConfig, catalog: Catalog
) -> str:
    if status == UNSUPPORTED:
        since = _support_end(product, catalog)
        return f"{product} is out of support{f' since {since}' if since else ''} (build {build or 'unknown'})"
    assert product is not None, "an outdated build belongs to a product with a baseline"
    baseline = config.baselines[product]
    return f"build {build} is below the {product} baseline {baseline}" + _support_ended(product, at, catalog)


def _support_ended(product: str | None, at: datetime, catalog: Catalog) -> str:
    """A product past its end of support that the baseline still decides (2016 and 2019) says so, and
    whether the Extended Security Updates that followed it still run or ended."""
    since, today = _support_end(product, catalog), at.date().isoformat()
    # ISO dates (also a bare YYYY-MM) order as text.
    if not since or since > today:
        return ""
    said = f"; {product} is out of support since {since}"
    updates_end = _security_updates_end(product, catalog)
    if updates_end:
        said += f"; Extended Security Updates {'ended' if updates_end <= today else 'until'} {updates_end}"
    return said


def _support_end(product: str | None, catalog: Catalog) -> str | None:
    """When the product's extended support ends (ISO, perhaps only YYYY-MM), if the catalog says."""
    return None if product is None else catalog.support_ends.get(product)


def _security_updates_end(product: str | None, catalog: Catalog) -> str | None:
    """When the paid Extended Security Updates after its end of support end, if the catalog says."""
    return None if product is None else catalog.security_updates_ends.get(product)


def _product(software: str | None, build: Build | None) -> str | None:
    """A non-Exchange MTA names its product (Sendmail 8.17 is not Exchange 2007); else the build does.
    An Exchange product known without a build (Exchange 2010's tracking log) holds until a build is seen."""
    if software and not (build is not None and software.startswith("Exchange")):
        return software
    return product_of(build)


def _forget_old_builds(state: ServerState, last_event_ms: int, window_ms: int) -> None:
    """Keep the builds stamped within the window; the newest one always stays as the last known build
    (of two stamped at the same moment, the higher: never the one folded last)."""
    if not state.builds:
        return
    horizon = last_event_ms - window_ms
    newest = max(state.builds, key=lambda b: (state.builds[b], _build_order(b)))
    state.builds = {b: t for b, t in state.builds.items() if t >= horizon or b == newest}


def _build_order(text: str) -> tuple[tuple[int, ...], str]:
    """Orders build texts as builds, and those that are none by their text."""
    build = Build.parse(text)
    return (build.parts if build else (), text)


_STATE_FIELDS = tuple(f.name for f in fields(ServerState))
# Every field but the version and the decision time: a decision is new when one of these changes.
_COMPARED = tuple(f.name for f in fields(Decision) if f.name not in ("version", "decided_at", "report_only"))


def _fingerprint(decision: Decision) -> str:
    """A stable text of the compared fields (stored in the state table, so no hash()). Report-only
    is marked only when set, so the fingerprints stored before it existed still match."""
    compared = repr(tuple(getattr(decision, name) for name in _COMPARED))
    return compared + " report-only" if decision.report_only else compared
