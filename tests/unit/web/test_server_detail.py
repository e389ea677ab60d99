from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.web.server_detail import catalog_entry, enforcement_text, server_detail

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
        (1, "2026-01-02", "passed", "2026-01-03T00:00:00.000Z"), (2, "2026-02-01", "current", "2026-02-02T09:00:00.000Z"),
        (3, "2026-02-11", "next", None), (4, "2026-02-21", "later", None)]
    assert (detail["timeline"][-1]["stage"], detail["timeline"][-1]["starts"]) == (8, "2026-04-02")
    assert [c["command_id"] for c in detail["controls"]] == ["c1", "c3"]  # its org's pause, matching exemption
    assert detail["upgrade"] is None


def test_a_paused_cycle_moves_the_projected_stages_with_the_next_one(outdated_page):
    outdated_page["row"] = outdated_page["row"] | {"next_stage_start_date": "2026-02-16"}  # five days of pause
    detail = server_detail(outdated_page, PolicyConfig(), load_catalog())
    assert [(e["stage"], e["starts"]) for e in detail["timeline"][2:4]] == [(3, "2026-02-16"), (4, "2026-02-26")]


def test_a_server_held_at_stage_1_by_a_pause_shows_where_its_clock_is(outdated_page):
    # Paused for 10 days after day 50: stage 1 enforced, the clock in stage 4; stage 5 (day 60,
    # 5 minutes rejected and 30 deferred) comes 10 days late.
    outdated_page["row"] = outdated_page["row"] | {
        "stage": 1, "next_stage_start_date": "2026-03-13", "next_stage_throttle_rate": 30, "next_stage_block_rate": 5}
    detail = server_detail(outdated_page, PolicyConfig(), load_catalog())
    assert detail["next"].startswith("From 2026-03-13, stage 5: 5 minutes of every hour are rejected")
    assert [(e["stage"], e["state"], e["starts"]) for e in detail["timeline"]][:6] == [
        (1, "current", "2026-01-02"), (2, "passed", "2026-02-01"), (3, "passed", "2026-02-11"),
        (4, "held back by the pause", "2026-02-21"), (5, "next", "2026-03-13"), (6, "later", "2026-03-23")]


def test_builds_come_with_release_names_and_kb_links_and_unsupported_products_with_an_upgrade(servers, outdated_page):
    catalog = load_catalog()
    assert catalog_entry("15.1.2507.72", catalog) == {
        "build": "15.1.2507.72", "product": "Exchange2016", "release": "CU23 Aug26SU", "release_date": "2026-08-11",
        "kb": "KB5121576", "kb_url": "https://support.microsoft.com/help/5121576"}
    assert catalog_entry("1.2.3", catalog)["release"] is None
    unsupported = server_detail({**outdated_page, "row": servers[0], "history": []}, PolicyConfig(), catalog)
    assert unsupported["upgrade"]["product"] == "ExchangeSE"
    assert unsupported["timeline"][0]["state"] == "current"
    assert unsupported["now"].startswith("Stage 1 since 2026-02-01: no mail is deferred or rejected")
