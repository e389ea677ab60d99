"""A report-only rollout end to end (issue 22): `patchgate report-only ORG` on the real broker, applied by a
running worker, which decides the org's servers again, marked; `patchgate mta` then accepts their mail
and records what it would have answered on mail.enforcement; the sink counts it and the report page,
in Chromium, says what would have been deferred and rejected. `patchgate enforce ORG` ends it."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

from pipeline.contracts import records
from pipeline.domain import windows
from pipeline.domain.policy import Decision
from pipeline.edges.shipper import ship
from pipeline.web import client
from testkit.ports import free_port
from tests.integration.conftest import TESTS, Workers, _drained, isolated_env
from tests.integration.test_control import PAUSED, later_mail_from_the_contoso_edge, latest, patchgate
from tests.integration.test_mta import ask, request, start_mta
from tests.integration.test_report_page import dom, screenshot

SERVER, ORG = PAUSED
BLOCKED = [f"action={windows.block_reply(60)}"]


def until_held(cache: Path, version: int, timeout: float = 60) -> Decision:
    """The contoso edge's decision once `patchgate mta` saved this version of it to its cache."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cache.exists():
            held = [records.decision_from_value(base64.b64decode(line)) for line in json.loads(cache.read_text())]
            found = [d for d in held if d.hostname == SERVER and d.version >= version]
            if found:
                return found[0]
        time.sleep(0.3)
    raise AssertionError(f"{cache} did not get version {version} of {SERVER} in {timeout:.0f} s")


def until_counted(settings, rejected: int, would_reject: int, timeout: float = 60) -> list:
    deadline, row = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        found = client.sql(settings, "SELECT report_only, deferred, rejected, would_defer, would_reject FROM servers "
                                     f"WHERE server = '{SERVER}'")["rows"]
        row = found[0] if found else None
        if row and row[2] >= rejected and row[4] >= would_reject:
            return row
        time.sleep(0.5)
    raise AssertionError(f"the servers view has {row} for {SERVER} after {timeout:.0f} s")


def test_report_only_accepts_records_what_would_have_been_and_the_report_says_so(tmp_path):
    settings, env = isolated_env(tmp_path / "data", config=TESTS / "samples.toml")
    workers = Workers(env, tmp_path)
    worker = workers.start()
    mta_port, cache = free_port(), tmp_path / "cache.json"
    mta = start_mta(env, mta_port, cache)
    try:
        ship(settings, [str(TESTS / "samples"), str(later_mail_from_the_contoso_edge(tmp_path))])
        _drained(settings, worker)
        enforced = latest(settings)[PAUSED]
        assert (enforced.stage, enforced.block_minutes_per_hour, enforced.report_only) == (8, 60, False)
        until_held(cache, enforced.version)
        assert asyncio.run(ask(mta_port, [request(SERVER)])) == BLOCKED

        done = patchgate(env, "report-only", "Contoso.Example", "--reason", "rollout: see before enforcing")
        assert (done.returncode, done.stdout.strip()) == (0, (
            "applied: contoso.example in report-only mode: the MTAs accept and record what they would do")), done.stderr
        _drained(settings, worker)
        reported = latest(settings)[PAUSED]
        # The stage goes on as always; only the answer changes.
        assert reported.version == enforced.version + 1 and reported.report_only
        assert (reported.stage, reported.block_minutes_per_hour, reported.smtp_reply) == (
            8, 60, enforced.smtp_reply)
        assert reported.reason.endswith("; report-only rollout (a command for contoso.example): the MTAs accept its "
                                        "mail and record what they would do")
        until_held(cache, reported.version)
        assert asyncio.run(ask(mta_port, [request(SERVER), request(SERVER)])) == ["action=DUNNO", "action=DUNNO"]

        # One real 550 from before, two that would have been: counted apart.
        assert until_counted(settings, rejected=1, would_reject=2) == [True, 0, 1, 0, 2]
        actions = client.sql(settings, "SELECT action, stage, decision_version FROM enforcement FINAL "
                                       f"WHERE hostname = '{SERVER}' ORDER BY at")["rows"]
        assert actions == [["block", 8, enforced.version], ["would-block", 8, reported.version],
                           ["would-block", 8, reported.version]]

        base = f"http://127.0.0.1:{settings.web_port}"
        page = dom(tmp_path, f"{base}/report.html")
        rollout = page[page.index('<h2 id="report-only">'):]
        rollout = rollout[:rollout.index("</table>")]
        assert "in report-only mode: the MTAs accept their mail and record what they would have done" in rollout
        assert "<th>contoso.example</th>" in rollout
        server_row = rollout[rollout.index(f">{SERVER}</a>"):].split("</tr>")[0]
        assert "stage 8" in server_row and "would have deferred 0 / rejected 2" in server_row
        screenshot(tmp_path, f"{base}/report.html", "report-report-only.png")
        server_page = dom(tmp_path, f"{base}/servers/{ORG}/{SERVER}")
        assert ("for now the MTAs accept this server's mail. They would have deferred 0 / rejected 2 attempts so far"
                in server_page)

        ended = patchgate(env, "enforce", "contoso.example")
        assert (ended.returncode, ended.stdout.strip()) == (0, "applied: contoso.example enforced again")
        _drained(settings, worker)
        again = latest(settings)[PAUSED]
        assert again.version == reported.version + 1 and not again.report_only and again.block_minutes_per_hour == 60
        until_held(cache, again.version)
        assert asyncio.run(ask(mta_port, [request(SERVER)])) == BLOCKED

        log = client.sql(settings, "SELECT action, target, outcome, detail FROM control_log FINAL "
                                   "ORDER BY issued_at")["rows"]
        assert [row[:3] for row in log] == [["report-only", ORG, "applied"], ["enforce", ORG, "applied"]]
    finally:
        mta.terminate()
        mta.wait(30)
        workers.close()
