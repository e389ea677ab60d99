from datetime import date

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import Pause, PolicyConfig
from pipeline.domain.pauses import pause_intervals
from pipeline.domain.schedule import schedule
from pipeline.web.server_detail import catalog_entry, enforcement_text, server_detail
from tests.unit.web.conftest import OUTDATED_FIRST, schedule_as_read

OUTDATED_ID = "contoso.example/ex16mbx01.contoso.example"  # window offset 44


def test_enforcement_names_the_window_block_minutes_first():
    assert enforcement_text(OUTDATED_ID, 5, 0) == (
        "5 minutes of every hour are deferred (450 4.7.230): minutes 44 to 48 UTC")
    assert enforcement_text(OUTDATED_ID, 30, 5) == (
        "5 minutes of every hour are rejected (550 5.7.230): minutes 44 to 48 UTC; "
        "30 minutes of every hour are deferred (450 4.7.230): minutes 49 to 59 and 0 to 18 UTC")
    assert enforcement_text(OUTDATED_ID, 0, 60) == "all its mail is rejected (550 5.7.230)"
    assert enforcement_text(OUTDATED_ID, 0, 0) == "no mail is deferred or rejected (reported only)"


def test_the_detail_says_what_is_now_what_comes_next_and_when(outdated_page):
    detail = server_detail(outdated_page, PolicyConfig(), load_catalog())
    assert detail["now"] == ("Stage 2 since 2026-02-01: 5 minutes of every hour are deferred (450 4.7.230): "
                             "minutes 44 to 48 UTC.")
    assert detail["next"] == ("From 2026-02-11, stage 3: 10 minutes of every hour are deferred (450 4.7.230): "
                              "minutes 44 to 53 UTC.")
    assert [(e["stage"], e["starts"], e["state"], e["applied_since"]) for e in detail["timeline"][:4]] == [
        (1, "2026-01-02", "passed", "2026-01-03T00:00:00.000Z"),
        (2, "2026-02-01", "current", "2026-02-02T09:00:00.000Z"),
        (3, "2026-02-11", "next", None), (4, "2026-02-21", "later", None)]
    assert (detail["timeline"][-1]["stage"], detail["timeline"][-1]["starts"]) == (8, "2026-04-02")
    assert [c["command_id"] for c in detail["controls"]] == ["c1", "c3"]  # its org's pause, matching exemption
    assert detail["upgrade"] is None


def test_a_paused_server_shows_the_schedules_dates_and_the_stage_it_gives_for_today(outdated_page):
    """contoso.example pauses from 2026-02-20 for 10 days, in stage 3 of the clock: the page's
    dates are the policy's schedule, today (2026-02-25) is in the pause, and the clock resumes at
    stage 3 when it ends."""
    config = PolicyConfig(pauses=(Pause("contoso.example", date(2026, 2, 20), 10),))
    steps = schedule(config.stages, OUTDATED_FIRST, pause_intervals(config, "contoso.example"))
    outdated_page["history"][-1]["schedule"] = schedule_as_read(config)
    outdated_page["newest_event"] = "2026-02-25T12:00:00.000Z"
    detail = server_detail(outdated_page, config, load_catalog())
    assert [(e["stage"], e["starts"]) for e in detail["timeline"]] == [
        (step.stage, step.start.date().isoformat()) for step in steps]
    assert [e["state"] for e in detail["timeline"][:5]] == ["passed", "passed", "passed", "current, paused", "next"]
    assert detail["now"] == ("Stage 1 since 2026-02-20 (its org's pause holds it at the first stage): no mail is "
                             "deferred or rejected (reported only).")
    assert detail["next"].startswith("From 2026-03-02, stage 3: 10 minutes of every hour are deferred")
    # Stage 4 was due on day 50 (2026-02-21), inside the pause: ten days later, and every later stage too.
    assert [(e["stage"], e["starts"]) for e in detail["timeline"][5:7]] == [(4, "2026-03-03"), (5, "2026-03-13")]


def test_the_page_follows_the_schedule_past_the_stage_of_the_last_message(outdated_page):
    """The newest decision was taken at stage 2; months later (the report's today) the schedule,
    which the MTAs apply, is at stage 8: the page says so, and when the last message was."""
    outdated_page["newest_event"] = "2026-10-13T08:00:00.000Z"
    detail = server_detail(outdated_page, PolicyConfig(), load_catalog())
    assert detail["now"] == "Stage 8 since 2026-04-02: all its mail is rejected (550 5.7.230)."
    assert detail["next"] == "Nothing further: this is the last stage, it lasts until the server is patched."
    assert detail["last_message"] == "Its last message was seen on 2026-02-08, at stage 2."


def test_builds_come_with_release_names_and_kb_links_and_unsupported_products_with_an_upgrade(servers, outdated_page):
    catalog = load_catalog()
    assert catalog_entry("15.1.2507.72", catalog) == {
        "build": "15.1.2507.72", "product": "Exchange2016", "release": "CU23 Aug26SU", "release_date": "2026-08-11",
        "kb": "KB5121576", "kb_url": "https://support.microsoft.com/help/5121576"}
    assert catalog_entry("1.2.3", catalog)["release"] is None
    unsupported = server_detail({**outdated_page, "row": servers[0], "history": []}, PolicyConfig(), catalog)
    assert unsupported["upgrade"]["product"] == "ExchangeSE"
    # No decision read yet: no schedule to show, the row's stage with no rates.
    assert unsupported["timeline"] == []
    assert unsupported["now"].startswith("Stage 1: no mail is deferred or rejected")
