import csv
import re
from pathlib import Path

import pytest

from pipeline.catalog_files import load_catalog
from pipeline.domain.builds import Build
from pipeline.domain.catalog import Catalog, builds_csv, product_of, read_builds
from pipeline.domain.config import PolicyConfig

DATA = Path(__file__).resolve().parents[3] / "pipeline" / "domain" / "data"


@pytest.mark.parametrize("name", ["exchange_builds.csv", "exchange_builds_supplemental.csv"])
def test_every_catalog_row_maps_to_its_product(name):
    with (DATA / name).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        assert product_of(Build.parse(row["build"])) == row["product"], row


@pytest.mark.parametrize(
    "build, product",
    [
        ("8.3.417.1", "Exchange2007"),
        ("14.3.513.0", "Exchange2010"),
        ("15.0.1497.2", "Exchange2013"),
        ("15.1.2507.39", "Exchange2016"),
        ("15.2.1748.39", "Exchange2019"),
        ("15.2.2561.999", "Exchange2019"),
        ("15.2.2562.17", "ExchangeSE"),
        ("15.2.2562.9999", "ExchangeSE"),
        ("15.20.7202.31", None),
        ("6.0.3790.3959", None),
    ],
)
def test_product_of_unlisted_builds(build, product):
    assert product_of(Build.parse(build)) == product


def test_status_against_the_default_baselines():
    catalog, config = load_catalog(), PolicyConfig()

    def status(text):
        build = Build.parse(text)
        return catalog.status(product_of(build), build, config)

    assert status("15.0.1497.2") == "unsupported"
    assert status("14.3.513.0") == "unsupported"
    assert status("15.1.2507.39") == "outdated"
    assert status("15.1.2507.61") == "current"
    assert status("15.2.1748.37") == "outdated"
    assert status("15.2.1748.39") == "current"
    assert status("15.2.2562.17") == "current"
    assert catalog.status(None, None, config) == "unknown"


def test_recommended_builds_are_at_or_above_the_baseline_newest_first():
    catalog = Catalog.from_csv(
        "product,release,build,release_date,kb\n"
        "Exchange2016,CU23,15.1.2507.6,2022-04-20,\n"
        "Exchange2016,CU23 Oct25SU,15.1.2507.61,2025-10-14,KB5066369\n"
        "Exchange2016,CU23 Dec25SU,15.01.2507.063,2025-12-09,KB5071873\n"
        "Exchange2019,CU15 Oct25SU,15.2.1748.39,2025-10-14,KB5066367\n"
    )
    assert catalog.recommended_builds("Exchange2016", PolicyConfig()) == ("15.1.2507.63", "15.1.2507.61")
    assert catalog.recommended_builds("Exchange2013", PolicyConfig()) == ()


def test_a_broken_catalog_row_names_its_line():
    with pytest.raises(ValueError, match=re.escape("exchange_builds.csv:3: field build")):
        Catalog.from_csv("product,release,build,release_date,kb\nExchange2016,CU23,15.1.2507.6,,\nExchange2016,X,CU24,,\n")


def test_a_product_out_of_support_is_unsupported_even_without_a_build():
    # A tracking log headed `#Version: 14.0.0.0` names Exchange 2010 but not its build.
    catalog, config = load_catalog(), PolicyConfig()
    assert catalog.status("Exchange2010", None, config) == "unsupported"
    assert catalog.status("Exchange2019", None, config) == "unknown"


SMALL = Catalog.from_csv(
    "product,release,build,release_date,kb\n"
    "Exchange2019,CU14 Aug26SU,15.2.1544.44,2026-08-11,KB5121575\n"
    "Exchange2019,CU14 Sep26SUv2,15.2.1544.48,2026-10-02,\n"
    "Exchange2019,CU15 Sep26SUv2,15.2.1748.53,2026-10-02,\n"
    "ExchangeSE,RTM Sep26SUv2,15.2.2562.53,2026-10-02,\n"
)


@pytest.mark.parametrize(
    "build, newest",
    [
        ("15.2.1544.50", "15.2.1544.48"),  # a CU14 update the catalog has not heard of
        ("15.2.1748.55", "15.2.1748.53"),
        ("15.2.1800.3", "15.2.1748.53"),  # a CU line newer than every 2019 line known
        ("15.2.1544.48", None),  # known
        ("15.2.1544.45", None),  # between known builds of its line
        ("15.2.1300.1", None),  # an unknown line older than the newest
    ],
)
def test_a_build_newer_than_everything_known_of_its_line(build, newest):
    passed = SMALL.ahead_of_catalog("Exchange2019", Build.parse(build))
    assert (str(passed) if passed else None) == newest


def test_a_stale_catalog_never_makes_a_build_outdated():
    config = PolicyConfig()
    # Below 2019's baseline (CU15), yet newer than the newest CU14 build the catalog knows.
    assert SMALL.status("Exchange2019", Build.parse("15.2.1544.50"), config) == "current"
    assert SMALL.status("Exchange2019", Build.parse("15.2.1544.44"), config) == "outdated"
    assert SMALL.status("ExchangeSE", Build.parse("15.2.2562.60"), config) == "current"


def test_a_product_the_catalog_has_no_builds_of_keeps_its_baseline():
    config = PolicyConfig.from_mapping({"baselines": {"Exim": "4.97"}})
    assert SMALL.ahead_of_catalog("Exim", Build.parse("4.96")) is None
    assert SMALL.status("Exim", Build.parse("4.96"), config) == "outdated"


def test_the_new_september_2026_updates_are_known():
    known = {str(b.build): b.release for b in load_catalog().builds}
    assert known["15.1.2507.75"] == "CU23 Sep26SUv2"
    assert known["15.2.1544.46"] == "CU14 Sep26SU"
    assert known["15.2.1748.53"] == "CU15 Sep26SUv2"
    assert known["15.2.2562.49"] == "RTM Sep26SU"


def test_a_build_list_survives_writing_and_reading():
    text = builds_csv(list(reversed(SMALL.builds)))
    assert text.startswith("product,release,build,release_date,kb\r\n")
    assert read_builds(text) == sorted(SMALL.builds, key=lambda b: b.build)


def test_a_build_list_without_a_build_column_names_its_file():
    with pytest.raises(ValueError, match=r"catalog.csv:1: missing column build"):
        read_builds("product,release,version,release_date\nExchange2016,CU23,15.1.2507.6,\n", "catalog.csv")
