"""Policy configuration: every number of the enforcement policy, with the defaults of DESIGN.md.

Built from a plain mapping (the parsed TOML file) so that this module stays free of I/O. Every value
is checked as it is read: one that does not read raises ConfigError, whose text names the key as the
operator wrote it (`policy.stages[2].block_minutes`) and what is wrong. The readers here (table,
integer, number, text, strings) check pipeline.settings' values the same way.
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from pipeline.domain.builds import Build
from pipeline.domain.hostnames import matches
from pipeline.domain.orgs import same_org
from pipeline.domain.scope import Scope


class ConfigError(ValueError):
    """A setting that does not read. Its text is one line: the key as written (a dotted path in the
    file or an environment variable) and the problem."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Stage:
    number: int
    start_day: int
    throttle_minutes: int
    block_minutes: int


DEFAULT_STAGES = (
    Stage(1, 0, 0, 0),
    Stage(2, 30, 5, 0),
    Stage(3, 40, 10, 0),
    Stage(4, 50, 20, 0),
    Stage(5, 60, 30, 5),
    Stage(6, 70, 30, 10),
    Stage(7, 80, 30, 20),
    Stage(8, 90, 0, 60),
)

DEFAULT_BASELINES = {
    "Exchange2016": "15.1.2507.61",
    "Exchange2019": "15.2.1748.39",
    "ExchangeSE": "15.2.2562.17",
}

# The product names a server can get: the Exchange products of catalog.product_of and the
# non-Exchange MTAs whose Received headers received.read_hop recognises.
PRODUCTS = ("Exchange2007", "Exchange2010", "Exchange2013", "Exchange2016", "Exchange2019", "ExchangeSE",
            "Exim", "Sendmail", "Postfix")

_STAGE_KEYS = ("start_day", "throttle_minutes", "block_minutes")
_PAUSE_KEYS = ("org", "start", "days")
# The target of a control command that names the whole site rather than an org (report-only, enforce).
SITE = "*"
_SCOPE_KEYS = ("connectors", "client_networks", "tls_peers")


@dataclass(frozen=True)
class Pause:
    org: str
    start: date
    days: int


@dataclass(frozen=True)
class Exemption:
    """A server name or name pattern (hostnames.matches) exempt from throttling and blocking until a day (the first
    one it is enforced again), granted by a control command."""

    pattern: str
    until: date
    reason: str

    def covers(self, server: str, at: datetime) -> bool:
        return at.date() < self.until and matches(self.pattern, server)


@dataclass(frozen=True)
class PolicyConfig:
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    vulnerable_products: frozenset[str] = frozenset({"Exchange2007", "Exchange2010", "Exchange2013"})
    baselines: Mapping[str, Build] = field(
        default_factory=lambda: {p: _build(b, f"policy.baselines.{p}") for p, b in DEFAULT_BASELINES.items()}
    )
    # None means every product is in scope for throttling and blocking.
    enforce_products: frozenset[str] | None = None
    exemptions: tuple[str, ...] = ()
    trusted_receivers: tuple[str, ...] = ("*.outlook.com", "*.protection.outlook.com")
    # Our own hops that hand mail on inside (content filters, internal relays): host name patterns
    # or CIDR ranges. Loopback clients always are.
    internal_hops: tuple[str, ...] = ()
    scope: Scope = field(default_factory=Scope)
    build_window_days: int = 7
    pause_budget_days: int = 90
    pauses: tuple[Pause, ...] = ()
    # The longest exemption a command may grant, in days from the day it was issued.
    max_exemption_days: int = 365
    # Report-only rollout: decisions and stages are computed as always, but the MTAs accept the mail
    # and record what they would have done. The whole site, or the orgs named (any case).
    report_only: bool = False
    report_only_orgs: tuple[str, ...] = ()
    # What control commands granted (pipeline.domain.control): their pauses are in `pauses` too.
    granted_exemptions: tuple[Exemption, ...] = ()
    # Orgs a command put in report-only mode, in lower case; SITE for the whole site.
    granted_report_only: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Any) -> PolicyConfig:
        """Read the `[policy]` table of the config file; raises ConfigError for a key it does not
        know or a value that does not read."""
        readers: dict[str, Callable[[Any, str], Any]] = {
            "stages": _stages,
            "vulnerable_products": _products,
            "baselines": _baselines,
            "enforce_products": _products,
            "exemptions": strings,
            "trusted_receivers": strings,
            "internal_hops": _internal_hops,
            "scope": _scope,
            "build_window_days": lambda value, key: integer(value, key, 0),
            "pause_budget_days": lambda value, key: integer(value, key, 0, 366),
            "pauses": _pauses,
            "max_exemption_days": lambda value, key: integer(value, key, 1),
            "report_only": boolean,
            "report_only_orgs": strings,
        }
        policy = table(data, "policy", readers)
        return cls(**{name: readers[name](value, f"policy.{name}") for name, value in policy.items()})

    def is_exempt(self, server: str, at: datetime | None = None) -> str | None:
        """What exempts `server` at `at`, if anything: the config file's pattern that matches, or
        a granted exemption (pattern, end and reason)."""
        pattern = next((p for p in self.exemptions if matches(p, server)), None)
        if pattern or at is None:
            return pattern
        granted = next((e for e in self.granted_exemptions if e.covers(server, at)), None)
        return f"{granted.pattern} until {granted.until.isoformat()} ({granted.reason})" if granted else None

    def exemption_ends(self, server: str) -> list[date]:
        """The days on which a granted exemption of `server` ends."""
        return [e.until for e in self.granted_exemptions if matches(e.pattern, server)]

    def controls_of(self, org: str | None, server: str) -> str:
        """The pauses and granted exemptions that can bear on the server, as text: a decision is
        taken again when it changes."""
        pauses = [p for p in self.pauses if same_org(p.org, org)]
        exemptions = [e for e in self.granted_exemptions if matches(e.pattern, server)]
        report_only = self.report_only_by(org)
        # Kept out of the text while off: states decided before report-only existed stay as decided.
        return repr((pauses, exemptions, report_only) if report_only else (pauses, exemptions))

    def report_only_by(self, org: str | None) -> str | None:
        """What puts the org's servers in report-only mode, if anything (the config file's setting
        first: a command cannot end it)."""
        if self.report_only:
            return "policy.report_only"
        if any(same_org(named, org) for named in self.report_only_orgs):
            return "policy.report_only_orgs"
        if SITE in self.granted_report_only:
            return "a command for the whole site"
        granted = next((named for named in self.granted_report_only if same_org(named, org)), None)
        return f"a command for {granted}" if granted else None

    def in_enforcement_scope(self, product: str | None) -> bool:
        return self.enforce_products is None or product in self.enforce_products


DATE_ORDERS = ("auto", "month-first", "day-first")
# The longest line read, by default, and the least it can be set to (a log line of a few KiB is common).
MAX_LINE_BYTES = 1024 * 1024
MIN_LINE_BYTES = 4096


@dataclass(frozen=True)
class FormatConfig:
    """How to read what a log's text leaves open (the `[formats]` table).

    exo_date_order: Exchange Online trace exports write dates in the exporting machine's culture;
    "auto" infers month-first or day-first from the file's unambiguous dates.
    max_line_bytes: a longer line (a binary file given by mistake) is one error at its position and
    is skipped unread: parsing it would take many times its size in memory. Mail logs have no such lines.
    syslog_zone: the zone of the time stamps that carry none (BSD syslog, RFC 3339 without an offset,
    Exim's main log without log_timezone): MTAs mostly log their server's local time.
    """

    exo_date_order: str = "auto"
    max_line_bytes: int = MAX_LINE_BYTES
    syslog_zone: tzinfo = UTC

    @classmethod
    def from_mapping(cls, data: Any, zone_named: Callable[[str], tzinfo] | None = None) -> FormatConfig:
        """`zone_named` gives the zone of an IANA name, or raises ValueError (the time zone database is
        the caller's to read)."""
        formats = table(data, "formats", ("exo_date_order", "max_line_bytes", "syslog_timezone"))
        read: dict[str, Any] = {}
        if "syslog_timezone" in formats:
            name = text(formats["syslog_timezone"], "formats.syslog_timezone")
            try:
                read["syslog_zone"] = _zone(name, zone_named)
            except ValueError:
                raise ConfigError("formats.syslog_timezone",
                                  f"must be an IANA time zone like Europe/Berlin, got {name!r}") from None
        if "exo_date_order" in formats:
            read["exo_date_order"] = one_of(formats["exo_date_order"], "formats.exo_date_order", DATE_ORDERS)
        if "max_line_bytes" in formats:
            read["max_line_bytes"] = integer(formats["max_line_bytes"], "formats.max_line_bytes", MIN_LINE_BYTES)
        return cls(**read)


def _zone(name: str, zone_named: Callable[[str], tzinfo] | None) -> tzinfo:
    """UTC by any of its names (equal to the default), else what the time zone database says."""
    if name.upper() in ("UTC", "ETC/UTC", "Z"):
        return UTC
    if zone_named is None:
        raise ValueError(f"no time zone database to read {name!r} from")
    return zone_named(name)


# Readers: each returns the value it was given, typed, or raises ConfigError naming `key`.

def table(value: Any, key: str, known: Iterable[str], what: str = "a setting") -> Mapping[str, Any]:
    """A table whose keys are all `known`; `key` is empty for the file's top level."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {value!r}")
    known = tuple(known)
    for name in value:
        if name not in known:
            raise ConfigError(f"{key}.{name}" if key else name, f"is not {what} (known: {', '.join(known)})")
    return value


def integer(value: Any, key: str, low: int, high: int | None = None) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value and (high is None or value <= high):
        return value
    allowed = f"from {low} to {high}" if high is not None else f">= {low}"
    raise ConfigError(key, f"must be an integer {allowed}, got {value!r}")


def number(value: Any, key: str, low: float, high: float | None = None, low_included: bool = True) -> float:
    """A finite number (an integer will do) from `low` (included or not) up to `high` (included)."""
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (low <= value if low_included else low < value) and (high is None or value <= high)):
        return float(value)
    allowed = f"{'>=' if low_included else '>'} {low}" + (f" and <= {high}" if high is not None else "")
    raise ConfigError(key, f"must be a number {allowed}, got {value!r}")


def text(value: Any, key: str, pattern: re.Pattern[str] | None = None, shape: str = "a non-empty string") -> str:
    """A string: one `pattern` matches whole, or any but the empty one."""
    if isinstance(value, str) and (pattern.fullmatch(value) if pattern else value):
        return value
    raise ConfigError(key, f"must be {shape}, got {value!r}")


def boolean(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(key, f"must be true or false, got {value!r}")


def strings(value: Any, key: str) -> tuple[str, ...]:
    """A list of non-empty strings."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of strings, got {value!r}")
    return tuple(text(item, f"{key}[{index}]") for index, item in enumerate(value))


def one_of(value: Any, key: str, options: Iterable[str]) -> str:
    options = tuple(options)
    if value in options:
        return value
    raise ConfigError(key, f"must be one of {', '.join(options)}, got {value!r}")


def _required(entry: Mapping[str, Any], key: str, name: str) -> Any:
    if name not in entry:
        raise ConfigError(f"{key}.{name}", "is missing")
    return entry[name]


def _tables(value: Any, key: str, known: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """A list of tables, each with every `known` key and no other."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of tables, got {value!r}")
    entries = []
    for index, entry in enumerate(value):
        entries.append(table(entry, f"{key}[{index}]", known))
        for name in known:
            _required(entry, f"{key}[{index}]", name)
    return entries


def _stages(value: Any, key: str) -> tuple[Stage, ...]:
    entries = _tables(value, key, _STAGE_KEYS)
    if not entries:
        raise ConfigError(key, "must hold at least one stage")
    stages: list[Stage] = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        start_day = integer(entry["start_day"], f"{where}.start_day", 0)
        # Minutes per hour: both windows fit in one hour.
        throttle = integer(entry["throttle_minutes"], f"{where}.throttle_minutes", 0, 60)
        block = integer(entry["block_minutes"], f"{where}.block_minutes", 0, 60)
        if not stages and start_day != 0:
            raise ConfigError(f"{where}.start_day", f"must be 0 (the first stage starts at detection), got {start_day}")
        if stages and start_day <= stages[-1].start_day:
            raise ConfigError(f"{where}.start_day",
                              f"must be greater than the previous stage's {stages[-1].start_day}, got {start_day}")
        if throttle + block > 60:
            raise ConfigError(where, "throttle_minutes + block_minutes must be at most 60 (per hour), "
                                     f"got {throttle + block}")
        stages.append(Stage(index + 1, start_day, throttle, block))
    return tuple(stages)


def _products(value: Any, key: str) -> frozenset[str]:
    return frozenset(one_of(name, f"{key}[{index}]", PRODUCTS) for index, name in enumerate(strings(value, key)))


def _baselines(value: Any, key: str) -> dict[str, Build]:
    baselines = table(value, key, PRODUCTS, what="a product")
    return {product: _build(build, f"{key}.{product}") for product, build in baselines.items()}


def _build(value: Any, key: str) -> Build:
    build = Build.parse(value) if isinstance(value, str) else None
    if build is None:
        raise ConfigError(key, f"must be a build number like 15.1.2507.61, got {value!r}")
    return build


def _internal_hops(value: Any, key: str) -> tuple[str, ...]:
    hops = strings(value, key)
    for index, hop in enumerate(hops):
        if "/" in hop:
            network(hop, f"{key}[{index}]", "a host name pattern or a CIDR range like 10.20.0.0/16")
    return hops


def network(value: str, key: str, shape: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(key, f"must be {shape}, got {value!r}") from None


def _scope(value: Any, key: str) -> Scope:
    scope = table(value, key, _SCOPE_KEYS)
    networks = strings(scope.get("client_networks", []), f"{key}.client_networks")
    return Scope.named(
        connectors=strings(scope.get("connectors", []), f"{key}.connectors"),
        client_networks=tuple(network(entry, f"{key}.client_networks[{index}]", "a CIDR range like 198.51.100.0/24")
                              for index, entry in enumerate(networks)),
        tls_peers=strings(scope.get("tls_peers", []), f"{key}.tls_peers"),
    )


def _pauses(value: Any, key: str) -> tuple[Pause, ...]:
    pauses = []
    for index, entry in enumerate(_tables(value, key, _PAUSE_KEYS)):
        where = f"{key}[{index}]"
        pauses.append(Pause(text(entry["org"], f"{where}.org"), day(entry["start"], f"{where}.start"),
                            integer(entry["days"], f"{where}.days", 1)))
    return tuple(pauses)


def day(value: Any, key: str) -> date:
    """A TOML date (2026-03-01) or the same as a string (also what a control command names)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(key, f"must be a date like 2026-03-01, got {value!r}")
