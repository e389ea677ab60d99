"""The owners' report in a real browser: Debian's chromium (headless) loads the pages of a pipeline
that processed every sample file and the test reads the DOM it rendered. Expectations come from the
decisions the pipeline published. With PATCHGATE_WRITE_SCREENSHOT=1 the screenshots are also
copied to docs/ (docs/report.png, docs/report-server.png), where docs/report.md shows them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from html import unescape
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

import pytest

from pipeline.domain.policy import Decision
from pipeline.domain.schedule import step_at
from pipeline.edges.decisions import read_decisions
from pipeline.web.server_detail import enforcement_text
from tests.unit.web.test_pages import HOSTILE_REASON, HOSTILE_SERVER, Dom, hostile_pages

DOCS = Path(__file__).resolve().parents[2] / "docs"


def chromium(tmp_path: Path, *arguments: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: apt-get install chromium"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'chromium'}",
         *arguments], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom(tmp_path: Path, url: str) -> str:
    return unescape(chromium(tmp_path, "--dump-dom", url))


def screenshot(tmp_path: Path, url: str, name: str) -> None:
    shot = tmp_path / name
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    if os.environ.get("PATCHGATE_WRITE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS / name)


@pytest.fixture(scope="module")
def latest(mixed_run):
    """The latest decision per server_id on mail.decisions."""
    newest: dict[str, Decision] = {}
    for decision in read_decisions(mixed_run.settings):
        if decision.server_id not in newest or decision.version > newest[decision.server_id].version:
            newest[decision.server_id] = decision
    return newest


def test_the_report_page_shows_every_server_its_stage_and_next_stage_date(mixed_run, latest, tmp_path):
    base = f"http://127.0.0.1:{mixed_run.settings.web_port}"
    page = dom(tmp_path, f"{base}/report.html")
    table = page[page.index("class=\"servers\""):]
    assert table.count("<tr>") == len(latest) + 1
    for decision in latest.values():
        href = f'href="/servers/{quote(decision.server_id, safe="/@")}">{decision.hostname}</a>'
        assert href in table, decision.server_id
        row = table[table.index(href):].split("</tr>")[0]
        assert f'<span class="{decision.status}">{decision.status}</span>' in row
        assert f"<td>{decision.stage}</td>" in row
        if decision.next_stage_start_date:
            assert f"<td>{decision.next_stage_start_date.isoformat()}</td>" in row
    stages = {d.stage for d in latest.values()}
    filtered = dom(tmp_path, f"{base}/report.html?stage={max(stages)}&sort=-first_detected")
    shown = filtered[filtered.index("class=\"servers\""):]
    assert shown.count("<tr>") == sum(d.stage == max(stages) for d in latest.values()) + 1
    screenshot(tmp_path, f"{base}/report.html", "report.png")


def test_a_server_page_says_what_is_wrong_what_comes_next_and_what_to_install(mixed_run, latest, tmp_path):
    base = f"http://127.0.0.1:{mixed_run.settings.web_port}"
    # The enforced server with the most to show: a next stage, recommended builds, then the most traffic.
    candidates = [d for d in latest.values() if d.next_stage_start_date and d.recommended_builds]
    assert candidates, "the samples give an outdated server with a next stage"
    decision = max(candidates, key=lambda d: (d.org is not None, d.server_id))
    url = f"{base}/servers/{quote(decision.server_id, safe='/@')}"
    page = dom(tmp_path, url)
    assert decision.reason in page
    # The page's today is the newest event of the run: the schedule's step then, and the one after.
    with urlopen(f"{base}/api/servers/{quote(decision.server_id, safe='/@')}", timeout=30) as answer:
        today = datetime.fromisoformat(json.load(answer)["newest_event"])
    now = step_at(decision.schedule, today)
    assert now is not None, "the decision carries its schedule"
    words = enforcement_text(decision.server_id, now.throttle_minutes_per_hour, now.block_minutes_per_hour)
    assert f"Stage {now.stage} since {now.start.date().isoformat()}" in page and words in page
    coming = next((step for step in decision.schedule if step.start > today), None)
    if coming is not None:
        words = enforcement_text(decision.server_id, coming.throttle_minutes_per_hour, coming.block_minutes_per_hour)
        assert f"From {coming.start.date().isoformat()}, stage {coming.stage}: {words}." in page
    assert f"<td>{decision.recommended_builds[0]}</td>" in page
    assert "<svg" in page and "messages per day" in page.lower()
    screenshot(tmp_path, url, "report-server.png")


def test_markup_in_a_host_name_or_a_reason_stays_text_in_the_browsers_dom(tmp_path):
    """Every page of the web port with markup in the values from logs and requests
    (tests/unit/web/test_pages.hostile_pages), as chromium builds it: no script or image element,
    and the markup shown as written."""
    for name, page in hostile_pages().items():
        path = tmp_path / f"{name}.html"
        path.write_text(page, encoding="utf-8")
        try:
            built = Dom(chromium(tmp_path, "--dump-dom", path.as_uri()))
        except subprocess.TimeoutExpired:
            # chromium dumps the DOM with a script of its own, which waits while a dialog is open.
            pytest.fail(f"{name}: no DOM from chromium: a script that got into the page opened alert()'s dialog")
        assert {"script", "img"} & set(built.elements) == set(), name
        assert {"src", "onerror"} & built.attribute_names == set(), name
        assert HOSTILE_SERVER in built.text or name == "login", name
        assert (HOSTILE_REASON in built.text) == (name in ("overview", "server")), name
