import pytest

from pipeline.catalog_files import load_catalog
from pipeline.domain.builds import Build
from pipeline.domain.config import PolicyConfig

HEADER = "product,release,build,release_date,kb\r\n"


def releases(catalog):
    return {str(b.build): b.release for b in catalog.builds}


def test_without_a_configured_file_the_shipped_catalog_is_used(tmp_path):
    assert load_catalog(tmp_path / "missing.csv") is load_catalog()


def test_a_configured_file_adds_builds_and_corrects_shipped_rows(tmp_path):
    configured = tmp_path / "exchange_builds.csv"
    configured.write_text(HEADER + "Exchange2019,CU15 Oct26SU,15.2.1748.56,2026-10-13,\r\n"
                          "Exchange2019,CU15 Oct25SU (corrected),15.2.1748.39,2025-10-14,KB5066367\r\n")
    catalog = load_catalog(configured)
    found = releases(catalog)
    assert found["15.2.1748.56"] == "CU15 Oct26SU"
    assert found["15.2.1748.39"] == "CU15 Oct25SU (corrected)"
    assert found["15.1.2507.75"] == "CU23 Sep26SUv2"  # shipped rows the file does not list still count
    assert catalog.support_ends["Exchange2016"] == "2025-10-14"
    # The newer catalog knows CU15 Oct26SU, so the build is no longer ahead of it.
    assert catalog.ahead_of_catalog("Exchange2019", Build.parse("15.2.1748.56")) is None
    assert catalog.recommended_builds("Exchange2019", PolicyConfig())[0] == "15.2.1748.56"


def test_a_broken_configured_file_names_its_file_line_and_field(tmp_path):
    configured = tmp_path / "exchange_builds.csv"
    configured.write_text(HEADER + "Exchange2019,CU15 Oct26SU,15.2.1748,2026-10-13,\r\nExchange2019,X,CU16,,\r\n")
    with pytest.raises(ValueError, match=rf"{configured}:3: field build: 'CU16' is not a build"):
        load_catalog(configured)
