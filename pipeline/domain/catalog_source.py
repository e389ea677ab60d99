"""Microsoft's published build table, read into catalog rows and merged into a known build list.

The "Exchange Server build numbers and release dates" page has one table per product:

    Product name | Release date | Build number (short format) | Build number (long format)

(older tables have a single "Build number" column). Operators save the page as HTML, or export
its tables as CSV with the same columns; either text is read here. Product names become our
products and release labels: "Exchange Server 2019 CU15 Oct25SU" is Exchange2019 "CU15 Oct25SU",
"Update Rollup 32 for Exchange Server 2010 SP3" is Exchange2010 "SP3 RU32".
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from html.parser import HTMLParser
from operator import attrgetter

from pipeline.domain.builds import Build
from pipeline.domain.catalog import CatalogBuild, product_of

_PRODUCTS = {"2007": "Exchange2007", "2010": "Exchange2010", "2013": "Exchange2013",
             "2016": "Exchange2016", "2019": "Exchange2019", "se": "ExchangeSE"}
_ROLLUP = re.compile(
    r"update rollup (?P<number>\d+)(?:[\s-]*v(?P<version>\d+))?\s+(?:for\s*)?exchange server (?P<product>2007|2010)"
    r"(?:\s+(?P<pack>sp\d))?\s*(?P<rest>.*)", re.IGNORECASE)
_RELEASE = re.compile(r"(?:microsoft\s+)?exchange server (?P<product>2007|2010|2013|2016|2019|se)\b\s*(?P<rest>.*)",
                      re.IGNORECASE)
# "Exchange Server 2019 CU15 (2025H1)": the half-year tag is not part of our labels ("CU15").
_HALF_YEAR = re.compile(r"\s*\(\d{4}H[12]\)")
_MONTHS = {name: number for number, name in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
     "december"), start=1)}
_WRITTEN_DATE = re.compile(r"(?P<month>[a-z]+)\.?\s*(?P<day>\d{1,2})?\s*,?\s*(?P<year>\d{4})", re.IGNORECASE)
_ISO_DATE = re.compile(r"\d{4}-\d{2}(?:-\d{2})?")
_US_DATE = re.compile(r"(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})")
# "CU23 Sep26SUv2": a re-released update's version, at the end of its release name.
_RE_RELEASE = re.compile(r"v\d+$")


@dataclass(frozen=True)
class Published:
    """The builds a page lists, and the rows that could not be read ("FILE:LINE: field NAME: why")."""

    builds: list[CatalogBuild]
    skipped: list[str]


@dataclass(frozen=True)
class CatalogChange:
    """A known build list with a page's builds merged in, and what the page changed."""

    builds: list[CatalogBuild]
    added: list[CatalogBuild]
    # (before, after) for builds whose release label or date the page corrects.
    changed: list[tuple[CatalogBuild, CatalogBuild]]
    # product -> how many of its builds the page lists
    covered: dict[str, int]


def read_published(text: str, source: str) -> Published:
    """The build rows of a saved page (HTML) or its CSV form; ValueError when it holds no build table."""
    rows = _html_rows(text) if re.search(r"<table\b", text, re.IGNORECASE) else _csv_rows(text)
    builds, skipped, tables = [], [], 0
    for columns, table_rows in rows:
        tables += 1
        for line, cells in table_rows:
            if not any(cells):
                continue  # the page separates release groups with empty rows
            entry = _entry([cells[i] if i < len(cells) else "" for i in columns])
            if isinstance(entry, CatalogBuild):
                builds.append(entry)
            else:
                skipped.append(f"{source}:{line}: {entry}")
    if not tables:
        raise ValueError(f"{source}: no Exchange build table (columns product name, release date, build number)")
    return Published(builds, skipped)


def merge(known: Iterable[CatalogBuild], published: Iterable[CatalogBuild]) -> CatalogChange:
    """The known builds with the page's added and its labels and dates taken over (the KB stays ours)."""
    known = list(known)
    merged = {entry.build: entry for entry in known}
    added: list[CatalogBuild] = []
    changed: list[tuple[CatalogBuild, CatalogBuild]] = []
    covered: Counter[str] = Counter()
    for entry in _re_releases_named(known, list(published)):
        covered[entry.product] += 1
        before = merged.get(entry.build)
        if before is None:
            merged[entry.build] = entry
            added.append(entry)
            continue
        # A month-only date on the page ("December, 2015") does not blur a known day.
        released = before.release_date if before.release_date.startswith(entry.release_date) else entry.release_date
        after = replace(before, product=entry.product, release=entry.release, release_date=released)
        if after != before:
            merged[entry.build] = after
            changed.append((before, after))
    by_build = attrgetter("build")
    return CatalogChange(sorted(merged.values(), key=by_build), sorted(added, key=by_build),
                         sorted(changed, key=lambda pair: pair[1].build), dict(covered))


def _re_releases_named(known: list[CatalogBuild], published: list[CatalogBuild]) -> list[CatalogBuild]:
    """The page's rows, a re-released update named as the catalog names it. The page may list a
    re-release (a higher build of the same update, released later) under the first one's name;
    it becomes "...v2" (v3 for the next), so that two builds never share a release name."""
    by_name: dict[tuple[str, str], list[CatalogBuild]] = {}
    for entry in [*known, *published]:
        by_name.setdefault((entry.product, _RE_RELEASE.sub("", entry.release)), []).append(entry)
    named = []
    for entry in published:
        if not _RE_RELEASE.search(entry.release):
            earlier = {other.build for other in by_name[(entry.product, entry.release)]
                       if other.build < entry.build and other.release_date < entry.release_date}
            if earlier:
                entry = replace(entry, release=f"{entry.release}v{len(earlier) + 1}")
        named.append(entry)
    return named


def _entry(cells: list[str]) -> CatalogBuild | str:
    """A table row (product name, release date, short build) as a catalog row, or why it is not one."""
    name, released, number = cells
    build = Build.parse(number)
    if build is None:
        return f"field build number: {number!r} is not a build"
    named = _product_and_release(name)
    if named is None:
        return f"field product name: {name!r} names no Exchange release of 2007 or later"
    product, release = named
    if product_of(build) != product:
        return f"field build number: {build} is not an {product} build"
    release_date = _release_date(released)
    if release_date is None:
        return f"field release date: {released!r} is not a date"
    return CatalogBuild(product, release, build, release_date)


def _product_and_release(name: str) -> tuple[str, str] | None:
    rollup = _ROLLUP.fullmatch(name)
    if rollup:
        version = f"v{rollup['version']}" if rollup["version"] else ""
        label = f"{(rollup['pack'] or 'RTM').upper()} RU{rollup['number']}{version} {rollup['rest']}"
        return _PRODUCTS[rollup["product"]], label.strip()
    release = _RELEASE.fullmatch(name)
    if release:
        return _PRODUCTS[release["product"].lower()], _HALF_YEAR.sub("", release["rest"]).strip() or "RTM"
    return None


def _release_date(text: str) -> str | None:
    """YYYY-MM-DD, or YYYY-MM where the page gives only the month ("December, 2015")."""
    if _ISO_DATE.fullmatch(text):
        return text
    written, us = _WRITTEN_DATE.fullmatch(text), _US_DATE.fullmatch(text)
    if written:
        month, day, year = _MONTHS.get(written["month"].lower()), written["day"], written["year"]
    elif us:
        month, day, year = int(us["month"]), us["day"], us["year"]
    else:
        return None
    try:
        day_of = date(int(year), month or 0, int(day or 1))
    except ValueError:
        return None
    return day_of.isoformat() if day else day_of.isoformat()[:7]


# A table: the indexes of the (product name, release date, short build) columns, and its (line, cells) rows.
Table = tuple[list[int], list[tuple[int, list[str]]]]


def _columns(header: list[str]) -> list[int] | None:
    """Where the product name, release date and short build are, from a header row; None if it is not one."""
    names = [" ".join(cell.lower().split()) for cell in header]

    def find(*words: str) -> int | None:
        return next((i for i, cell in enumerate(names) if all(word in cell for word in words)), None)

    product, released, short = find("product"), find("date"), find("build", "short")
    build = short if short is not None else find("build")
    if product is None or released is None or build is None:
        return None
    return [product, released, build]


def _csv_rows(text: str) -> Iterator[Table]:
    """One table: a header row where there is one, else the page's column order."""
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, [" ".join(cell.split()) for cell in row]) for row in reader]
    if not rows:
        return
    header = _columns(rows[0][1])
    if header is not None:
        yield header, rows[1:]
    elif any(Build.parse(cells[2]) for _, cells in rows if len(cells) >= 3):
        yield [0, 1, 2], rows


def _html_rows(text: str) -> Iterator[Table]:
    reader = _TableReader()
    reader.feed(text)
    reader.close()
    for rows in reader.tables:
        if not rows:
            continue
        header = _columns(rows[0][1])
        if header is not None:
            yield header, rows[1:]


class _TableReader(HTMLParser):
    """Collects the text of every table cell, row by row, with the line each row starts on.

    The page does not nest tables, so a table inside a table is read as part of the outer one.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[tuple[int, list[str]]]] = []
        self._depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append([])
        elif not self._depth:
            return
        elif tag == "tr":
            self._end_cell()
            self.tables[-1].append((self.getpos()[0], []))
        elif tag in ("td", "th"):
            self._end_cell()
            if not self.tables[-1]:
                self.tables[-1].append((self.getpos()[0], []))
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "tr") and self._depth:
            self._end_cell()
        elif tag == "table" and self._depth:
            self._end_cell()
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def _end_cell(self) -> None:
        if self._cell is not None:
            self.tables[-1][-1][1].append(" ".join("".join(self._cell).split()))
        self._cell = None
