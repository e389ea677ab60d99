"""The Exchange build catalog: which product a build belongs to, its status, the builds to move to.

The facts come from Microsoft's build-number and lifecycle pages as CSV (pipeline/domain/data/);
this module only interprets text handed to it, so new builds ship without code changes.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from pipeline.domain.builds import Build
from pipeline.domain.config import PolicyConfig

# Exchange Server SE kept the 2019 major.minor; its builds start at 15.2.2562.
_SE_FIRST_BUILD = 2562

UNSUPPORTED, OUTDATED, CURRENT, UNKNOWN = "unsupported", "outdated", "current", "unknown"
VULNERABLE_STATUSES = frozenset({UNSUPPORTED, OUTDATED})


@dataclass(frozen=True)
class CatalogBuild:
    product: str
    release: str
    build: Build
    release_date: str


def product_of(build: Build | None) -> str | None:
    """The Exchange product a build belongs to, also for builds the catalog does not list."""
    if build is None or build.is_cloud:
        return None
    major, minor, number = (build.parts + (0, 0))[:3]
    if major == 8:
        return "Exchange2007"
    if major == 14:
        return "Exchange2010"
    if major == 15:
        if minor == 0:
            return "Exchange2013"
        if minor == 1:
            return "Exchange2016"
        if minor == 2:
            return "ExchangeSE" if number >= _SE_FIRST_BUILD else "Exchange2019"
    return None


class Catalog:
    def __init__(self, builds: list[CatalogBuild], support_ends: dict[str, str] | None = None):
        unique = {b.build: b for b in builds}
        self.builds = sorted(unique.values(), key=lambda b: b.build, reverse=True)
        # product -> end of extended support (YYYY-MM-DD), from exchange_lifecycle.csv
        self.support_ends = support_ends or {}
        self._recommended: dict[tuple[str, Build], tuple[str, ...]] = {}

    @classmethod
    def from_csv(cls, *builds_csv: str, lifecycle_csv: str = "") -> Catalog:
        """From the text of one or more build lists (exchange_builds.csv and its supplement)."""
        builds = []
        for text in builds_csv:
            for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
                build = Build.parse(row["build"])
                if build is None:
                    raise ValueError(f"exchange_builds.csv:{number}: field build: {row['build']!r} is not a build")
                builds.append(CatalogBuild(row["product"], row["release"], build, row["release_date"]))
        ends = {row["product"]: row["extended_end"] for row in csv.DictReader(io.StringIO(lifecycle_csv)) if row["extended_end"]}
        return cls(builds, ends)

    def status(self, product: str | None, build: Build | None, config: PolicyConfig) -> str:
        if build is None or product is None:
            return UNKNOWN
        if product in config.vulnerable_products:
            return UNSUPPORTED
        baseline = config.baselines.get(product)
        if baseline is None:
            return UNKNOWN
        return OUTDATED if build < baseline else CURRENT

    def recommended_builds(self, product: str | None, config: PolicyConfig) -> tuple[str, ...]:
        """Catalog builds of the same product at or above its baseline, newest first."""
        baseline = config.baselines.get(product) if product else None
        if baseline is None or product in config.vulnerable_products:
            return ()
        key = (product, baseline)
        if key not in self._recommended:
            self._recommended[key] = tuple(str(b.build) for b in self.builds if b.product == product and b.build >= baseline)
        return self._recommended[key]
