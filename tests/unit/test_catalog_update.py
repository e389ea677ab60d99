import io
from pathlib import Path

from pipeline.catalog_files import load_catalog
from pipeline.catalog_update import update_catalog
from pipeline.settings import Settings

DATA = Path(__file__).resolve().parent / "domain" / "data"
PAGE = DATA / "build-numbers-and-release-dates.html"
PAGE_CSV = DATA / "build-numbers-and-release-dates.csv"


def update(settings, source, output=None):
    out, errors = io.StringIO(), io.StringIO()
    code = update_catalog(settings, source, output, out, errors)
    return code, out.getvalue(), errors.getvalue()


def test_the_saved_page_updates_the_configured_catalog(tmp_path):
    settings = Settings(data_dir=tmp_path)
    code, out, errors = update(settings, PAGE)
    assert (code, errors) == (0, "")
    written = settings.catalog_file
    assert written == tmp_path / "catalog" / "exchange_builds.csv"
    assert out.splitlines() == [
        f"{PAGE}: 34 builds (Exchange2007 4, Exchange2010 6, Exchange2013 3, Exchange2016 5, Exchange2019 10,"
        " ExchangeSE 6)",
        "added 3 builds:",
        "  Exchange2016 CU23 Oct26SU 15.1.2507.78 (2026-10-13)",
        "  Exchange2019 CU15 Oct26SU 15.2.1748.56 (2026-10-13)",
        "  ExchangeSE RTM Oct26SU 15.2.2562.57 (2026-10-13)",
        "changed 0 builds",
        f"wrote {len(load_catalog().builds) + 3} builds to {written}: `patchgate evaluate` uses it from now on,"
        " running workers after a restart",
    ]
    catalog = load_catalog(written)
    assert {str(b.build) for b in load_catalog().builds} < {str(b.build) for b in catalog.builds}
    assert next(b for b in catalog.builds if str(b.build) == "15.2.2562.57").release == "RTM Oct26SU"


def test_a_second_page_builds_on_the_first_and_reports_corrections(tmp_path):
    settings = Settings(data_dir=tmp_path)
    update(settings, PAGE)
    code, out, errors = update(settings, PAGE_CSV)
    assert code == 0
    assert errors == f"{PAGE_CSV}:5: field release date: 'TBA' is not a date (row skipped)\n"
    assert "added 1 build:\n  Exchange2019 CU14 Oct26SU 15.2.1544.50 (2026-10-13)\n" in out
    assert ("changed 1 build:\n  15.2.721.4: release 'CU7 Nov20SU [eightwone label: 2019 CU7 + KB581424]' -> "
            "'CU7 Nov20SU', release_date '2020-11' -> '2020-11-10'\n") in out
    releases = {str(b.build): b for b in load_catalog(settings.catalog_file).builds}
    assert releases["15.2.2562.57"].release == "RTM Oct26SU"  # from the first page
    assert releases["15.2.721.4"].kb == "KB4588741"


def test_output_elsewhere_leaves_the_configured_catalog_alone(tmp_path):
    settings = Settings(data_dir=tmp_path)
    code, out, _ = update(settings, PAGE_CSV, tmp_path / "review.csv")
    assert code == 0 and (tmp_path / "review.csv").is_file() and not settings.catalog_file.exists()
    assert out.endswith("set [catalog] path or PATCHGATE_CATALOG to it to use it\n")


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    settings = Settings(data_dir=tmp_path)
    code, out, errors = update(settings, tmp_path / "missing.html")
    assert (code, out) == (2, "")
    assert errors == f"patchgate catalog update: {tmp_path / 'missing.html'}: cannot read: No such file or directory\n"
    binary = tmp_path / "page.html"
    binary.write_bytes(b"<table>\xff\xfe</table>")
    assert update(settings, binary)[2] == f"patchgate catalog update: {binary}: not UTF-8 text at byte 7\n"
    page = tmp_path / "signin.html"
    page.write_text("<html><body><h1>Sign in</h1></body></html>")
    code, _, errors = update(settings, page)
    assert code == 2 and errors.startswith(f"patchgate catalog update: {page}: no Exchange build table")
    assert not settings.catalog_file.exists()
