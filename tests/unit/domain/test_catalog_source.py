import re
from pathlib import Path

import pytest

from pipeline.catalog_files import load_catalog
from pipeline.domain.builds import Build
from pipeline.domain.catalog import CatalogBuild
from pipeline.domain.catalog_source import merge, read_published

DATA = Path(__file__).resolve().parent / "data"
PAGE = (DATA / "build-numbers-and-release-dates.html").read_text(encoding="utf-8")
PAGE_CSV = (DATA / "build-numbers-and-release-dates.csv").read_text(encoding="utf-8")


def rows(published):
    return {str(b.build): (b.product, b.release, b.release_date) for b in published.builds}


def test_the_saved_page_gives_every_product_table_and_skips_other_tables():
    published = read_published(PAGE, "page.html")
    found = rows(published)
    assert published.skipped == []
    assert len(found) == 34
    assert found["15.2.2562.57"] == ("ExchangeSE", "RTM Oct26SU", "2026-10-13")
    assert found["15.2.2562.17"] == ("ExchangeSE", "RTM", "2025-07-01")
    assert found["15.2.1748.10"] == ("Exchange2019", "CU15", "2025-02-10")
    assert found["15.1.2507.75"] == ("Exchange2016", "CU23 Sep26SUv2", "2026-10-02")
    assert found["15.0.847.32"] == ("Exchange2013", "SP1", "2014-02-25")


@pytest.mark.parametrize(
    "build, release, date",
    [
        ("14.3.513.0", "SP3 RU32", "2021-03-02"),
        ("14.3.224.1", "SP3 RU8v1 (recalled)", "2014-12-09"),
        ("14.2.342.3", "SP2 RU6", "2013-02-12"),  # "Update Rollup 6 Exchange Server 2010 SP2": no "for"
        ("14.0.726.0", "RTM RU5", "2010-12-13"),
        ("8.3.459.0", "SP3 RU19", "2016-03-15"),  # "forExchange"
        ("8.3.445.0", "SP3 RU18", "2015-12"),  # the page gives only "December, 2015"
        ("8.3.279.6", "SP3 RU8v3", "2012-11-13"),  # "Update Rollup 8-v3"
    ],
)
def test_update_rollup_names_become_the_catalog_labels(build, release, date):
    assert rows(read_published(PAGE, "page.html"))[build][1:] == (release, date)


def test_the_page_agrees_with_the_shipped_catalog_where_both_list_a_build():
    shipped = {b.build: b for b in load_catalog().builds}
    for entry in read_published(PAGE, "page.html").builds:
        known = shipped.get(entry.build)
        if known:
            assert (known.product, known.release) == (entry.product, entry.release)
            assert known.release_date == entry.release_date


def test_the_csv_form_reads_the_same_and_names_a_bad_row():
    published = read_published(PAGE_CSV, "builds.csv")
    assert rows(published)["15.2.1544.50"] == ("Exchange2019", "CU14 Oct26SU", "2026-10-13")
    assert published.skipped == ["builds.csv:5: field release date: 'TBA' is not a date"]


def test_a_csv_without_a_header_row_is_read_in_the_page_column_order():
    published = read_published('Exchange Server SE RTM Oct26SU,"October 13, 2026",15.2.2562.57\n', "-")
    assert rows(published) == {"15.2.2562.57": ("ExchangeSE", "RTM Oct26SU", "2026-10-13")}


@pytest.mark.parametrize(
    "row, problem",
    [
        ("Exchange Server 2019 CU15 Oct26SU,October 13 2026,15.2.x,", "field build number: '15.2.x' is not a build"),
        ("Exchange Server 2003 SP2,October 19 2005,6.5.7683,",
         "field product name: 'Exchange Server 2003 SP2' names no Exchange release of 2007 or later"),
        ("Exchange Server 2019 CU15 Oct26SU,October 13 2026,15.1.2507.78,",
         "field build number: 15.1.2507.78 is not an Exchange2019 build"),
        ("Exchange Server 2019 CU15 Oct26SU,February 30 2026,15.2.1748.56,",
         "field release date: 'February 30 2026' is not a date"),
    ],
)
def test_a_row_that_cannot_be_read_is_skipped_with_its_line_and_field(row, problem):
    text = "Product name,Release date,Build number (short format),Build number (long format)\n" + row + "\n"
    assert read_published(text, "builds.csv").skipped == [f"builds.csv:2: {problem}"]


@pytest.mark.parametrize("text", ["", "<html><body><p>Access denied</p></body></html>", "a,b,c\n1,2,3\n"])
def test_a_file_without_a_build_table_is_an_error(text):
    with pytest.raises(ValueError, match=re.escape("page.html: no Exchange build table")):
        read_published(text, "page.html")


def test_html_rows_name_their_line_in_the_saved_page():
    page = PAGE.replace("<td>15.2.1748.56</td>", "<td>15.2.1748.5x</td>")
    [problem] = read_published(page, "page.html").skipped
    name_line = next(n for n, text in enumerate(page.splitlines(), start=1) if "2019 CU15 Oct26SU" in text)
    line = name_line - 1  # the row's <tr>
    assert problem == f"page.html:{line}: field build number: '15.2.1748.5x' is not a build"


def entry(build, release="CU15", date="2025-02-10", kb=""):
    return CatalogBuild("Exchange2019", release, Build.parse(build), date, kb)


def test_merge_adds_new_builds_and_takes_corrected_labels_and_dates_keeping_the_kb():
    known = [entry("15.2.1748.10", "CU15", "2025-02"), entry("15.2.1748.39", "CU15 Oct25SU", "2025-10-14", "KB5066367")]
    published = [entry("15.2.1748.39", "CU15 Oct25SU", "2025-10-14"), entry("15.2.1748.10", "CU15", "2025-02-10"),
                 entry("15.2.1748.56", "CU15 Oct26SU", "2026-10-13")]
    change = merge(known, published)
    assert [str(b.build) for b in change.added] == ["15.2.1748.56"]
    assert change.changed == [(known[0], entry("15.2.1748.10", "CU15", "2025-02-10"))]
    assert [(str(b.build), b.kb) for b in change.builds] == [
        ("15.2.1748.10", ""), ("15.2.1748.39", "KB5066367"), ("15.2.1748.56", "")]
    assert change.covered == {"Exchange2019": 3}


def test_merge_keeps_a_known_day_where_the_page_gives_only_the_month():
    known = CatalogBuild("Exchange2007", "SP3 RU18", Build.parse("8.3.445.0"), "2015-12-15")
    change = merge([known], [CatalogBuild("Exchange2007", "SP3 RU18", Build.parse("8.3.445.0"), "2015-12")])
    assert change.changed == [] and change.builds[0].release_date == "2015-12-15"


def test_merge_names_a_re_released_update_listed_under_its_first_name_v2():
    known = [entry("15.2.1748.51", "CU15 Sep26SU", "2026-09-08", "KB5121609")]
    published = [entry("15.2.1748.51", "CU15 Sep26SU", "2026-09-08"),
                 entry("15.2.1748.53", "CU15 Sep26SU", "2026-10-02"),
                 entry("15.2.1748.54", "CU15 Sep26SU", "2026-10-20")]
    change = merge(known, published)
    assert [(str(b.build), b.release) for b in change.builds] == [
        ("15.2.1748.51", "CU15 Sep26SU"), ("15.2.1748.53", "CU15 Sep26SUv2"), ("15.2.1748.54", "CU15 Sep26SUv3")]
    assert change.changed == []
    # Known as v2 already, listed under the first name again: nothing changes.
    again = merge(change.builds, [entry("15.2.1748.53", "CU15 Sep26SU", "2026-10-02")])
    assert again.changed == [] and again.added == []
    # Builds of one name released on the same day are the page's to name.
    same_day = merge([], [entry("15.2.1748.10", "CU15"), entry("15.2.1748.11", "CU15")])
    assert {b.release for b in same_day.builds} == {"CU15"}
