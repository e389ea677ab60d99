import csv
from pathlib import Path

import pytest

from pipeline.catalog_files import load_catalog
from pipeline.domain.builds import Build
from pipeline.domain.catalog import Catalog, product_of
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
    with pytest.raises(ValueError, match="exchange_builds.csv:3: field build"):
        Catalog.from_csv("product,release,build,release_date,kb\nExchange2016,CU23,15.1.2507.6,,\nExchange2016,X,CU24,,\n")
