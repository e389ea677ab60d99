"""Control commands end to end (issue 12): `patchgate pause|resume|exempt|unexempt` on the real broker,
applied by a running worker without a restart, answered by the MTA and kept in ClickHouse."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

from pipeline.domain import windows
from pipeline.domain.policy import Decision
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.web import client
from testkit.ports import free_port
from tests.integration.conftest import TESTS, Workers, _drained, isolated_env, patchgate
from tests.integration.test_mta import ask, request, start_mta
from tests.integration.test_report_page import dom, screenshot

PAUSED = ("ex16edge01.contoso.example", "contoso.example")
EXEMPT = ("mail.fabrikam.example", None)


def latest(settings) -> dict:
    newest: dict[tuple[str, str | None], Decision] = {}
    for decision in read_decisions(settings):
        key = (decision.hostname, decision.org)
        if key not in newest or decision.version > newest[key].version:
            newest[key] = decision
    return newest


def later_mail_from_the_contoso_edge(folder):
    """The samples' first mail of ex16edge01.contoso.example (X-OriginatorOrg contoso.example) again,
    sent on 20 May 2026: 99 days after its first sighting, so blocked all hour."""
    first = (TESTS / "samples" / "headers" / "inbound.mbox").read_text().split("\nFrom ")[0]
    block = first.split("\n", 1)[1]  # without the mbox From_ line
    later = folder / "ex16edge01-later.eml"
    later.write_text(block.replace("10 Feb 2026", "20 May 2026").replace("Tue,", "Wed,")
                     .replace("6f1c2a8e", "7a2d3b9f"))
    return later


def until_answered(port: int, host: str, action: str, timeout: float = 60) -> None:
    """Until the MTA answers `action` for `host` (it follows mail.decisions as they come)."""
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        answer = asyncio.run(ask(port, [request(host)]))
        if answer == [f"action={action}"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"the MTA still answers {answer} for {host}, not action={action}")


def test_pause_resume_budget_and_an_exemption_that_ends_on_its_day(tmp_path):
    settings, env = isolated_env(tmp_path / "data", config=TESTS / "samples.toml")
    workers = Workers(env, tmp_path)
    worker = workers.start()
    mta_port = free_port()
    mta = start_mta(env, mta_port, tmp_path / "cache.json")
    try:
        ship(settings, [str(TESTS / "samples"), str(later_mail_from_the_contoso_edge(tmp_path))])
        _drained(settings, worker)
        before = latest(settings)
        assert (before[PAUSED].stage, before[PAUSED].block_minutes_per_hour) == (8, 60)
        assert asyncio.run(ask(mta_port, [request(PAUSED[0])])) == [f"action={windows.block_reply(60)}"]

        # A pause over its last mail: the stage clock stands still and nothing is blocked.
        paused = patchgate(env, "pause", "Contoso.Example", "--days", "30", "--from", "2026-05-01",
                           "--reason", "migration to Exchange SE")
        assert (paused.returncode, paused.stdout.strip()) == (
            0, "applied: contoso.example paused from 2026-05-01 until 2026-05-31"), paused.stderr
        _drained(settings, worker)
        during = latest(settings)[PAUSED]
        assert (during.stage, during.throttle_minutes_per_hour, during.block_minutes_per_hour) == (1, 0, 0)
        assert during.smtp_reply is None and during.reason.endswith("; enforcement paused until 2026-05-31")
        # Paused days do not count: by 20 May 08:14, 79 days and 16 hours of 99 were unpaused, so
        # stage 7 (day 80) comes due as the pause ends, on 31 May.
        assert before[PAUSED].next_stage_start_date is None and during.next_stage_start_date == date(2026, 5, 31)
        may = datetime(2026, 5, 1, tzinfo=UTC)
        # The schedule holds stage 1 through May, resumes stage 6 where the clock stood, stage 7 that day.
        assert [(step.start.date(), step.stage, step.paused) for step in during.schedule if step.start >= may][:3] == [
            (date(2026, 5, 1), 1, True), (date(2026, 5, 31), 6, False), (date(2026, 5, 31), 7, False)]
        # The MTA applies the schedule for its own clock, long after May: the pause is over there.
        until_answered(mta_port, PAUSED[0], windows.block_reply(60))

        # 30 of 90 days used in 2026: 70 more are refused, whole, with the reason.
        over = patchgate(env, "pause", "contoso.example", "--days", "70", "--from", "2026-06-01", "--reason", "more")
        assert (over.returncode, over.stdout.strip()) == (
            1, "refused: over budget: contoso.example has 60 of 90 pause days left in 2026, the pause needs 70 more")

        # A pause from today, ended by a resume on the same day: no paused day is left of it.
        today = datetime.now(UTC).date()
        assert patchgate(env, "pause", "contoso.example", "--days", "5", "--reason", "freeze").returncode == 0
        # The pause covers the MTA's today: its mail is accepted at once, with no new message.
        until_answered(mta_port, PAUSED[0], "DUNNO")
        resumed = patchgate(env, "resume", "contoso.example")
        assert (resumed.returncode, resumed.stdout.strip()) == (
            0, f"applied: contoso.example enforced again from {today.isoformat()}")
        until_answered(mta_port, PAUSED[0], windows.block_reply(60))

        # An exemption until a day after today (commands cannot end in the past): exempt at once ...
        until = datetime.now(UTC).date() + timedelta(days=40)
        exempt = patchgate(env, "exempt", EXEMPT[0], "--until", until.isoformat(), "--reason", "vendor appliance")
        assert exempt.returncode == 0, exempt.stdout + exempt.stderr
        _drained(settings, worker)
        exempted = latest(settings)[EXEMPT]
        assert exempted.stage == 0 and exempted.reason == (
            f"exempt: matches {EXEMPT[0]} until {until.isoformat()} (vendor appliance)")
        # ... and enforced again by its first mail on or after that day.
        later = tmp_path / "mainlog-later"
        sent = datetime.combine(until + timedelta(days=3), datetime.min.time())
        later.write_text(f"{sent:%Y-%m-%d} 08:14:01 1vZz9G-0000000F3wb-1R0u <= billing@fabrikam.example "
                         "H=mail.fabrikam.example (mail.fabrikam.example) [203.0.113.25]:51544 P=esmtps S=8342 "
                         f"id=9999.{sent:%Y%m%d}@app01.fabrikam.example\n")
        ship(settings, [str(later)])
        _drained(settings, worker)
        after = latest(settings)[EXEMPT]
        assert after.stage == 8 and not after.reason.startswith("exempt") and after.block_minutes_per_hour == 60

        # Every command and its outcome is in control_log, beside nothing from the config file (it sets none).
        log = client.sql(settings, "SELECT action, target, outcome, source, detail FROM control_log FINAL "
                                   "ORDER BY issued_at")["rows"]
        assert [row[:4] for row in log] == [["pause", "contoso.example", "applied", "command"],
                                            ["pause", "contoso.example", "refused", "command"],
                                            ["pause", "contoso.example", "applied", "command"],
                                            ["resume", "contoso.example", "applied", "command"],
                                            ["exempt", EXEMPT[0], "applied", "command"]]
        assert log[1][4].startswith("over budget")

        # The server's page shows its pause, the refused one and the moved stages, in a browser.
        page = dom(tmp_path, f"http://127.0.0.1:{settings.web_port}/servers/contoso.example/{PAUSED[0]}")
        assert "migration to Exchange SE" in page and "over budget: contoso.example has 60 of 90" in page
        assert "enforcement paused until 2026-05-31" in page
        screenshot(tmp_path, f"http://127.0.0.1:{settings.web_port}/servers/contoso.example/{PAUSED[0]}",
                   "report-server-paused.png")
    finally:
        mta.terminate()
        mta.wait(30)
        workers.close()
