"""The Exchange build catalog: which product a build belongs to, its status, the builds to move to.

The facts come from Microsoft's build-number and lifecycle pages as CSV (pipeline/domain/data/);
this module only interprets text handed to it, so new builds ship without code changes.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.domain.builds import Build
from pipeline.domain.config import PolicyConfig

# Exchange Server SE kept the 2019 major.minor; its builds start at 15.2.2562.
_SE_FIRST_BUILD = 2562

UNSUPPORTED, OUTDATED, CURRENT, UNKNOWN = "unsupported", "outdated", "current", "unknown"
VULNERABLE_STATUSES = frozenset({UNSUPPORTED, OUTDATED})

BUILD_COLUMNS = ("product", "release", "build", "release_date", "kb")


@dataclass(frozen=True)
class CatalogBuild:
    product: str
    release: str
    build: Build
    release_date: str
    kb: str = ""


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


def line_of(build: Build) -> tuple[int, ...]:
    """The CU line (major.minor.build): the security updates of one CU differ only in the last part."""
    return build.parts[:3]


def read_builds(text: str, source: str = "exchange_builds.csv") -> list[CatalogBuild]:
    """The rows of a build list (exchange_builds.csv, its supplement, an operator's newer catalog)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [name for name in BUILD_COLUMNS[:4] if name not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"{source}:1: missing column {', '.join(missing)}")
    builds = []
    for number, row in enumerate(reader, start=2):
        build = Build.parse(row["build"])
        if build is None:
            raise ValueError(f"{source}:{number}: field build: {row['build']!r} is not a build")
        builds.append(CatalogBuild(row["product"], row["release"], build, row["release_date"], row.get("kb") or ""))
    return builds


@dataclass(frozen=True)
class Lifecycle:
    """When each product's support ends (YYYY-MM-DD, perhaps only YYYY-MM): its extended support,
    and the Extended Security Updates that paying customers get after it (2016 and 2019)."""

    support_ends: Mapping[str, str] = field(default_factory=dict)
    security_updates_ends: Mapping[str, str] = field(default_factory=dict)


def read_lifecycle(text: str) -> Lifecycle:
    """From exchange_lifecycle.csv (columns extended_end and esu_end; empty where none)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return Lifecycle({row["product"]: row["extended_end"] for row in rows if row["extended_end"]},
                     {row["product"]: row["esu_end"] for row in rows if row.get("esu_end")})


def builds_csv(builds: list[CatalogBuild]) -> str:
    """A build list in the shipped file's shape, oldest build first (which also groups the products)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(BUILD_COLUMNS)
    for entry in sorted(builds, key=lambda b: b.build):
        writer.writerow((entry.product, entry.release, entry.build, entry.release_date, entry.kb))
    return out.getvalue()


class Catalog:
    def __init__(self, builds: list[CatalogBuild], lifecycle: Lifecycle | None = None):
        # A later row of the same build wins: a newer catalog corrects the shipped one.
        unique = {b.build: b for b in builds}
        self.builds = sorted(unique.values(), key=lambda b: b.build, reverse=True)
        lifecycle = lifecycle or Lifecycle()
        self.support_ends, self.security_updates_ends = lifecycle.support_ends, lifecycle.security_updates_ends
        self._recommended: dict[tuple[str, Build], tuple[str, ...]] = {}
        # product -> CU line -> its newest build, and product -> its newest line: status() runs per
        # observation, so these are looked up, not searched.
        self._newest_in_line: dict[str, dict[tuple[int, ...], Build]] = {}
        for entry in self.builds:
            self._newest_in_line.setdefault(entry.product, {}).setdefault(line_of(entry.build), entry.build)
        self._newest_line = {product: max(lines) for product, lines in self._newest_in_line.items()}

    @classmethod
    def from_csv(cls, *builds_csv: str, lifecycle_csv: str = "") -> Catalog:
        """From the text of one or more build lists (exchange_builds.csv and its supplement)."""
        return cls([b for text in builds_csv for b in read_builds(text)], read_lifecycle(lifecycle_csv))

    def status(self, product: str | None, build: Build | None, config: PolicyConfig) -> str:
        """A product out of support is `unsupported` whatever its build, even an unknown one.

        A build newer than the catalog knows is `current`: a stale catalog must never enforce.
        """
        if product is None:
            return UNKNOWN
        if product in config.vulnerable_products:
            return UNSUPPORTED
        baseline = config.baselines.get(product)
        if build is None or baseline is None:
            return UNKNOWN
        if build < baseline and self.ahead_of_catalog(product, build) is None:
            return OUTDATED
        return CURRENT

    def ahead_of_catalog(self, product: str | None, build: Build | None) -> Build | None:
        """The newest catalog build that `build` passes, when the catalog knows nothing as new of its line.

        That is the newest build of the build's CU line; or, for a line the catalog does not have
        at all and newer than all the product's lines, the product's newest build. None when the
        catalog knows the build or a newer one of its line, or knows no build of the product.
        """
        if build is None or product is None:
            return None
        lines = self._newest_in_line.get(product)
        if not lines:
            return None
        line = line_of(build)
        newest = lines.get(line)
        if newest is None:
            newest_line = self._newest_line[product]
            return lines[newest_line] if line > newest_line else None
        return newest if build > newest else None

    def recommended_builds(self, product: str | None, config: PolicyConfig) -> tuple[str, ...]:
        """Catalog builds of the same product at or above its baseline, newest first."""
        if not product:
            return ()
        baseline = config.baselines.get(product)
        if baseline is None or product in config.vulnerable_products:
            return ()
        key = (product, baseline)
        if key not in self._recommended:
            self._recommended[key] = tuple(
                str(b.build) for b in self.builds if b.product == product and b.build >= baseline)
        return self._recommended[key]
