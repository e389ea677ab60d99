"""A throttled or blocked server released by its own message's Received headers."""
import dataclasses
from datetime import UTC, datetime

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.policy import Decision
from pipeline.domain.release import MAX_RECEIVED, message_trace, proof
from tests.conftest import decision as published_decision

CATALOG = load_catalog()
CONFIG = PolicyConfig(trusted_receivers=("mx.example.net",))
AT = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
SERVER = "ex16mbx01.contoso.example"
OURS = "from ex16mbx01.contoso.example ([192.0.2.7]) by mx.example.net (Postfix) with ESMTPS id 4XyZ1; " \
       "Wed, 2 Dec 2026 10:00:00 +0000"


def decision(build: str | None, hostname: str = SERVER, org: str | None = None) -> Decision:
    """`hostname`'s decision at the last stage (blocked the whole hour), taken on its `build`."""
    return published_decision(
        hostname, org, 8, 3, product="Exchange2016", build=build, status="outdated", block_minutes_per_hour=60,
        throttle_enabled_date=None, blocking_enabled_date=None, next_stage_start_date=None,
        next_stage_throttle_rate=None, next_stage_block_rate=None, decided_at=datetime(2026, 11, 1, tzinfo=UTC))


def theirs(build: str, server: str = SERVER) -> str:
    return (f"from mbx02.contoso.example (10.9.0.7) by {server} (10.1.0.9) with Microsoft SMTP Server id {build}; "
            "Wed, 2 Dec 2026 09:59:58 +0000")


def released(held: Decision, *received: str):
    trace = message_trace(list(received), AT, None, "192.0.2.7", "ann@contoso.example", ("jo@example.net",),
                          held.org, "milter")
    return proof(held, trace, CONFIG, CATALOG)


def test_the_servers_own_header_with_a_current_build_releases_it():
    found = released(decision("15.1.2507.9"), OURS, theirs("15.1.2507.61"))
    assert (found.server, found.build) == (SERVER, "15.1.2507.61")
    # Moved to another product at its current build: current too.
    assert released(decision("15.1.2507.9"), OURS, theirs("15.2.2562.17")).build == "15.2.2562.17"


def test_a_build_newer_than_the_decisions_releases_it_though_not_yet_current():
    assert released(decision("15.1.2507.9"), OURS, theirs("15.1.2507.39")).build == "15.1.2507.39"


def test_the_same_or_an_older_build_another_server_or_no_header_release_nothing():
    held = decision("15.1.2507.39")
    assert released(held, OURS, theirs("15.1.2507.39")) is None
    assert released(held, OURS, theirs("15.1.2507.9")) is None
    assert released(held, OURS, theirs("15.1.2507.61", server="ex19.fabrikam.example")) is None
    assert released(held, OURS) is None
    assert released(held) is None


def test_a_decision_without_a_build_is_released_only_by_a_current_one():
    assert released(decision(None), OURS, theirs("15.1.2507.39")) is None
    assert released(decision(None), OURS, theirs("15.1.2507.61")) is not None


def test_the_trace_names_the_server_as_the_pipeline_does_in_its_org_and_reads_a_bounded_chain():
    held = decision("15.1.2507.9", org="contoso")
    trace = message_trace([OURS] * (MAX_RECEIVED + 5), AT, "mail.contoso.example", "192.0.2.7", None, (), held.org,
                          "milter")
    assert (trace.org, trace.source_format, trace.position.source, len(trace.received)) == (
        "contoso", "smtp", "milter", MAX_RECEIVED)
    assert released(held, OURS, theirs("15.1.2507.61")).server_id == "contoso/ex16mbx01.contoso.example"
    assert released(dataclasses.replace(held, hostname="other.example"), OURS, theirs("15.1.2507.61")) is None
