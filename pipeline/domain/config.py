"""Policy configuration: every number of the enforcement policy, with the defaults of DESIGN.md.

Built from a plain mapping (the parsed TOML file) so that this module stays free of I/O.
"""
from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping

from pipeline.domain.builds import Build
from pipeline.domain.scope import Scope


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


@dataclass(frozen=True)
class Pause:
    org: str
    start: date
    days: int


@dataclass(frozen=True)
class PolicyConfig:
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    vulnerable_products: frozenset[str] = frozenset({"Exchange2007", "Exchange2010", "Exchange2013"})
    baselines: Mapping[str, Build] = field(
        default_factory=lambda: {p: Build.parse(b) for p, b in DEFAULT_BASELINES.items()}
    )
    # None means every product is in scope for throttling and blocking.
    enforce_products: frozenset[str] | None = None
    exemptions: tuple[str, ...] = ()
    trusted_receivers: tuple[str, ...] = ("*.outlook.com", "*.protection.outlook.com")
    # Our own hops that hand mail on inside (content filters, internal relays): host name patterns
    # or CIDR ranges. Loopback clients always are.
    internal_hops: tuple[str, ...] = ()
    scope: Scope = Scope()
    build_window_days: int = 7
    pause_budget_days: int = 90
    pauses: tuple[Pause, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """Read the `[policy]` table of the config file; unknown keys are an error, not silence."""
        known = {
            "stages", "vulnerable_products", "baselines", "enforce_products", "exemptions",
            "trusted_receivers", "build_window_days", "pause_budget_days", "pauses", "internal_hops", "scope",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown policy settings: {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        if "stages" in data:
            kwargs["stages"] = tuple(
                Stage(i + 1, int(s["start_day"]), int(s["throttle_minutes"]), int(s["block_minutes"]))
                for i, s in enumerate(data["stages"])
            )
        if "vulnerable_products" in data:
            kwargs["vulnerable_products"] = frozenset(data["vulnerable_products"])
        if "baselines" in data:
            kwargs["baselines"] = {p: _build(b, f"baselines.{p}") for p, b in data["baselines"].items()}
        if "enforce_products" in data:
            kwargs["enforce_products"] = frozenset(data["enforce_products"])
        for key in ("exemptions", "trusted_receivers", "internal_hops"):
            if key in data:
                kwargs[key] = tuple(data[key])
        for hop in kwargs.get("internal_hops", ()):
            if "/" in hop:
                try:
                    ipaddress.ip_network(hop, strict=False)
                except ValueError:
                    raise ValueError(f"internal_hops: {hop!r} is not a CIDR range like 10.20.0.0/16") from None
        for key in ("build_window_days", "pause_budget_days"):
            if key in data:
                kwargs[key] = int(data[key])
        if "scope" in data:
            kwargs["scope"] = Scope.from_mapping(data["scope"])
        if "pauses" in data:
            kwargs["pauses"] = tuple(
                Pause(str(p["org"]), date.fromisoformat(str(p["start"])), int(p["days"]))
                for p in data["pauses"]
            )
        return cls(**kwargs)

    def is_exempt(self, server: str) -> str | None:
        """The exemption pattern that matches `server`, if any."""
        return next((p for p in self.exemptions if fnmatch.fnmatch(server, p.lower())), None)

    def in_enforcement_scope(self, product: str | None) -> bool:
        return self.enforce_products is None or product in self.enforce_products


DATE_ORDERS = ("auto", "month-first", "day-first")


@dataclass(frozen=True)
class FormatConfig:
    """How to read what a log's text leaves open (the `[formats]` table).

    exo_date_order: Exchange Online trace exports write dates in the exporting machine's culture;
    "auto" infers month-first or day-first from the file's unambiguous dates.
    """

    exo_date_order: str = "auto"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FormatConfig:
        unknown = set(data) - {"exo_date_order"}
        if unknown:
            raise ValueError(f"unknown formats settings: {', '.join(sorted(unknown))}")
        order = str(data.get("exo_date_order", "auto"))
        if order not in DATE_ORDERS:
            raise ValueError(f"formats.exo_date_order: {order!r} is not one of {', '.join(DATE_ORDERS)}")
        return cls(exo_date_order=order)


def _build(text: str, where: str) -> Build:
    build = Build.parse(text)
    if build is None:
        raise ValueError(f"{where}: {text!r} is not a build number like 15.1.2507.61")
    return build
