"""`patchgate notify` on the real broker: decisions on mail.decisions become mails that a private
Postfix delivers to the owners' Maildirs, once each, also across a restart."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime

from pipeline.contracts.topics import NOTICES
from pipeline.domain.notify_config import NotifyConfig
from pipeline.edges.notify import run
from tests.conftest import decision as published_decision
from tests.integration.conftest import publish_decisions

ADMINS, OPS, TAILSPIN = "exchange-admins@owners.example", "ops@owners.example", "it@owners.example"


def decision(server, org, stage, version, status="unsupported", throttle=date(2026, 1, 30), block=date(2026, 3, 1)):
    staged = stage != 0
    return published_decision(
        server, org, stage, version, server_id=f"{org.lower()}/{server}", status=status,
        throttle_minutes_per_hour=0 if stage in (0, 1) else 5,
        first_detected=datetime(2025, 12, 31, 7, tzinfo=UTC) if staged else None,
        throttle_enabled_date=throttle if staged else None, blocking_enabled_date=block if staged else None,
        next_stage_start_date=date(2026, 2, 9) if staged else None, next_stage_throttle_rate=10 if staged else None,
        next_stage_block_rate=0 if staged else None,
        reason="Exchange2013 is out of support" if staged else "current build",
        decided_at=datetime(2026, 1, 20, tzinfo=UTC),
    )


def notifying(settings, mailboxes):
    """The settings with a [notify] table that sends through `mailboxes`."""
    return replace(settings, notify=NotifyConfig(
        smtp_host="127.0.0.1", smtp_port=mailboxes.smtp_port, sender="patchgate@pipeline.example",
        report_url="http://report.example:6066", lead_days=7,
        contacts={"contoso": (ADMINS, OPS), "tailspin": (TAILSPIN,)}))


def test_notices_reach_the_owners_mailboxes_once_across_restarts(pipeline_env, mailboxes, read_topic):
    mailboxes = mailboxes([ADMINS, OPS, TAILSPIN])
    settings = notifying(pipeline_env[0], mailboxes)
    publish_decisions(
        settings,
        decision("ex13.contoso.example", "Contoso", stage=1, version=1),  # throttled in 5 days: warned at once
        decision("ex16.contoso.example", "Contoso", stage=2, version=4, throttle=date(2026, 1, 10)),
        decision("ex16.contoso.example", "Contoso", stage=1, version=2),  # older, read late: changes nothing
        decision("mx.tailspin.example", "Tailspin", stage=0, version=1, status="current"),
        decision("mx.fabrikam.example", "Fabrikam", stage=3, version=1),  # no contacts
    )

    assert run(settings, at=datetime(2026, 1, 25, 9, tzinfo=UTC)) == 2
    for address in (ADMINS, OPS):
        mails = mailboxes.wait_for(address, 2)
        assert sorted(m["Subject"] for m in mails) == [
            "[patchgate] ex13.contoso.example: Exchange2013 15.0.1497.2 is unsupported, report only; "
            "throttling starts 2026-01-30",
            "[patchgate] ex16.contoso.example: stage 2, mail deferred 5 min/hr",
        ]
        assert {m["To"] for m in mails} == {f"{ADMINS}, {OPS}"}
        assert {m["From"] for m in mails} == {"patchgate@pipeline.example"}
    ex13 = next(m for m in mailboxes.messages(ADMINS) if "ex13" in m["Subject"]).get_content()
    assert "The server's page: http://report.example:6066/servers/contoso/ex13.contoso.example" in ex13
    assert "Throttling (450 4.7.230) from 2026-01-30." in ex13
    assert {r.key.decode() for r in read_topic(settings, NOTICES)} == {
        "contoso/ex13.contoso.example|stage-1-v1", "contoso/ex13.contoso.example|throttle-warning-2026-01-30",
        "contoso/ex16.contoso.example|stage-2-v4",
    }

    # A restart reads back what was sent: nothing is due again.
    assert run(settings, at=datetime(2026, 1, 25, 9, 5, tzinfo=UTC)) == 0

    # A new stage is one new notice.
    publish_decisions(settings, decision("ex13.contoso.example", "Contoso", stage=2, version=2))
    assert run(settings, at=datetime(2026, 1, 30, 9, tzinfo=UTC)) == 1
    for address in (ADMINS, OPS):
        mails = mailboxes.wait_for(address, 3)
        assert mails[-1]["Subject"] == "[patchgate] ex13.contoso.example: stage 2, mail deferred 5 min/hr"
    mailboxes.wait_until_delivered()  # all that the runs sent: nothing more came
    assert [len(mailboxes.messages(a)) for a in (ADMINS, OPS, TAILSPIN)] == [3, 3, 0]


def test_following_sends_each_notice_as_its_decision_arrives(pipeline_env, mailboxes):
    mailboxes = mailboxes([ADMINS, OPS])
    settings = notifying(pipeline_env[0], mailboxes)
    stopping, sent = threading.Event(), []
    follower = threading.Thread(target=lambda: sent.append(
        run(settings, at=datetime(2026, 1, 25, 9, tzinfo=UTC), follow=True, stop=stopping.is_set)))
    follower.start()
    try:
        publish_decisions(settings, decision("ex13.contoso.example", "Contoso", stage=1, version=1))
        mailboxes.wait_for(ADMINS, 1)
        publish_decisions(settings, decision("ex13.contoso.example", "Contoso", stage=2, version=2))
        assert mailboxes.wait_for(ADMINS, 2)[-1]["Subject"] == \
            "[patchgate] ex13.contoso.example: stage 2, mail deferred 5 min/hr"
    finally:
        stopping.set()
        follower.join(30)
    assert sent == [2]
