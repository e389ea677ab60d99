"""Which notices are due: stage entries, lead-days warnings, one per server per event, contacts."""
from dataclasses import replace
from datetime import UTC, date, datetime

from pipeline.domain.notices import Ledger, SentNotice, due_notices
from pipeline.domain.notify_config import NotifyConfig
from pipeline.domain.windows import window_offset
from tests.conftest import decision as published_decision

CONFIG = NotifyConfig(report_url="https://patchgate.example/", lead_days=7,
                      contacts={"contoso": ("admins@contoso.example", "ops@contoso.example")})
NOW = datetime(2026, 1, 20, 9, 30, tzinfo=UTC)


def decision(stage=1, version=1, server="mail.contoso.example", org="Contoso", status="outdated", **changes):
    return replace(published_decision(
        server, org, stage, version, server_id=f"{org.lower()}/{server}" if org else server, product="Exchange2019",
        build="15.2.1544.4", status=status, throttle_minutes_per_hour={2: 5, 5: 30}.get(stage, 0),
        block_minutes_per_hour=5 if stage == 5 else 0, first_detected=datetime(2026, 1, 1, 8, tzinfo=UTC),
        throttle_enabled_date=date(2026, 1, 31), blocking_enabled_date=date(2026, 3, 2),
        next_stage_start_date=date(2026, 1, 31), recommended_builds=("15.2.1748.39", "15.2.1544.25"),
        reason="build 15.2.1544.4 is below the baseline"), **changes)


def due(decisions, ledger=None, now=NOW, config=CONFIG):
    return due_notices(decisions, ledger or Ledger(), now, config)


def sent_all(ledger, result):
    for notice in result.notices:
        for event in notice.sent():
            ledger.add(event)


def test_a_vulnerable_server_at_stage_1_gets_one_notice_to_its_orgs_contacts():
    [notice] = due([decision()]).notices
    assert notice.recipients == ("admins@contoso.example", "ops@contoso.example")
    assert notice.events == ("stage-1-v1",)
    assert notice.subject == "[patchgate] mail.contoso.example: Exchange2019 15.2.1544.4 is outdated, report only"
    assert "https://patchgate.example/servers/contoso/mail.contoso.example" in notice.body
    assert "15.2.1748.39, 15.2.1544.25" in notice.body
    assert "Throttling (450 4.7.230) from 2026-01-31." in notice.body


def test_a_first_decision_that_is_not_vulnerable_or_at_stage_0_is_no_notice():
    healthy = decision(stage=0, status="current", throttle_enabled_date=None, blocking_enabled_date=None)
    assert due([healthy]).notices == []
    assert due([decision(stage=1, status="unknown")]).notices == []


def test_each_event_goes_out_once_and_a_new_stage_is_a_new_notice():
    ledger = Ledger()
    sent_all(ledger, due([decision()], ledger))
    assert due([decision()], ledger).notices == []
    assert due([decision(version=2, reason="reworded")], ledger).notices == [], "same stage: nothing new"
    [notice] = due([decision(stage=2, version=3)], ledger).notices
    assert notice.events == ("stage-2-v3",)
    offset = window_offset("contoso/mail.contoso.example")
    assert f"5 minutes of every hour are deferred with 450 4.7.230 (minutes {offset} to {(offset + 4) % 60} UTC)" \
        in notice.body


def test_leaving_enforcement_after_notices_is_told_too():
    ledger = Ledger()
    ledger.add(SentNotice("contoso/mail.contoso.example", "stage-2-v3", 2, 3))
    back = decision(stage=0, version=4, status="current", throttle_enabled_date=None, blocking_enabled_date=None,
                    next_stage_start_date=None)
    [notice] = due([back], ledger).notices
    assert notice.subject == "[patchgate] mail.contoso.example: no longer enforced"


def test_the_ledger_knows_the_stage_of_the_newest_notice_whatever_order_it_is_read_in():
    ledger = Ledger()
    ledger.add(SentNotice("s", "stage-3-v5", 3, 5))
    ledger.add(SentNotice("s", "stage-2-v2", 2, 2))
    assert ledger.stage_told("s") == 3


def test_a_warning_is_due_lead_days_before_throttling_starts_and_not_before_or_after():
    ledger = Ledger()
    sent_all(ledger, due([decision()], ledger))  # the stage 1 notice, told long before
    assert due([decision()], ledger, now=datetime(2026, 1, 23, 23, 59, tzinfo=UTC)).notices == []
    on_time = datetime(2026, 1, 24, 0, 0, tzinfo=UTC)
    [warning] = due([decision()], ledger, now=on_time).notices
    assert warning.events == ("throttle-warning-2026-01-31",)
    assert warning.subject == "[patchgate] mail.contoso.example: throttling starts 2026-01-31"
    sent_all(ledger, due([decision()], ledger, now=on_time))
    assert due([decision()], ledger, now=datetime(2026, 1, 30, tzinfo=UTC)).notices == [], "warned once"
    started = datetime(2026, 1, 31, tzinfo=UTC)
    assert due([decision(version=2, throttle_enabled_date=date(2026, 2, 7))], Ledger(), now=started).notices[0].events \
        == ("stage-1-v2", "throttle-warning-2026-02-07"), "a moved date (a pause) is a new event"
    assert due([decision()], ledger, now=started).notices == [], "the day it starts is too late for a warning"


def test_a_stage_notice_and_due_warnings_are_one_mail():
    [notice] = due([decision()], now=datetime(2026, 1, 25, tzinfo=UTC),
                   config=replace(CONFIG, lead_days=40)).notices
    assert notice.events == ("stage-1-v1", "throttle-warning-2026-01-31", "block-warning-2026-03-02")
    assert notice.subject == ("[patchgate] mail.contoso.example: Exchange2019 15.2.1544.4 is outdated, report only; "
                              "throttling starts 2026-01-31")


def test_a_block_warning_comes_on_its_own_once_throttling_runs():
    ledger = Ledger()
    ledger.add(SentNotice("contoso/mail.contoso.example", "stage-4-v6", 4, 6))
    [warning] = due([decision(stage=4, version=6)], ledger, now=datetime(2026, 2, 24, tzinfo=UTC)).notices
    assert warning.events == ("block-warning-2026-03-02",)
    assert warning.subject == "[patchgate] mail.contoso.example: blocking starts 2026-03-02"


def test_lead_days_zero_sends_no_warnings():
    ledger = Ledger()
    ledger.add(SentNotice("contoso/mail.contoso.example", "stage-1-v1", 1, 1))
    assert due([decision()], ledger, now=datetime(2026, 1, 30, tzinfo=UTC),
               config=replace(CONFIG, lead_days=0)).notices == []


def test_orgs_without_contacts_get_nothing_and_are_named():
    result = due([decision(org="Fabrikam", server="mx.fabrikam.example"), decision(org=None, server="10.0.0.9"),
                  decision()])
    assert [n.decision.org for n in result.notices] == ["Contoso"]
    assert result.uncontacted == {"fabrikam", None}


def test_a_blocking_stage_says_both_windows():
    [notice] = due([decision(stage=5)]).notices
    assert notice.subject == "[patchgate] mail.contoso.example: stage 5, mail rejected 5 min/hr"
    # The server's windows start at minute 54: the deferred minutes run past the hour.
    assert window_offset("contoso/mail.contoso.example") == 54
    assert ("5 minutes of every hour are rejected with 550 5.7.230 (minutes 54 to 58 UTC) and 30 minutes of "
            "every hour are deferred with 450 4.7.230 (minutes 59 and 0 to 28 UTC)") in notice.body


def test_a_stage_in_report_only_mode_says_the_mail_is_still_delivered():
    [notice] = due([decision(stage=2, report_only=True)]).notices
    assert notice.subject == "[patchgate] mail.contoso.example: stage 2, mail deferred 5 min/hr (report-only for now)"
    assert ("For now the site runs in report-only mode: your mail is delivered, and what would have been deferred "
            "or rejected is recorded.") in notice.body
