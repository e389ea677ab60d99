"""The whole data flow on the real broker with every sample format: decisions, ClickHouse tables,
agreement with `patchgate evaluate`, the worker's web port, and a replay of the same input."""
from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest

from pipeline.domain.policy import Decision
from pipeline.domain.report import evaluate_row
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.evaluate import evaluate
from pipeline.settings import load_settings
from pipeline.web import client

TESTS = Path(__file__).resolve().parents[1]
SAMPLES, CONFIG = TESTS / "samples", TESTS / "samples.toml"

# (server, org) -> (status, stage) of the latest decision per server after the samples. How many
# versions lead there depends on the order partitions are consumed in (a late event can arrive
# first), so the test checks that versions run 1..n without gaps instead of a fixed n.
EXPECTED = {
    ("192.0.2.140", None): ("unknown", 0),
    ("192.0.2.201", None): ("unknown", 0),
    ("192.0.2.75", "fabrikam.onmicrosoft.com"): ("unknown", 0),
    ("198.51.100.112", "fabrikam.onmicrosoft.com"): ("unknown", 0),
    ("203.0.113.147", "fabrikam.onmicrosoft.com"): ("unknown", 0),
    ("203.0.113.60", "contoso.onmicrosoft.com"): ("unknown", 0),
    ("ex07hub01.wingtip.example", None): ("unsupported", 1),
    ("ex10cas01.adatum.example", None): ("unsupported", 1),
    ("ex10hub01.fabrikam.example", None): ("unsupported", 1),
    ("ex13cas01.fabrikam.example", None): ("unsupported", 1),
    ("ex13hyb01.contoso.example", "3f6c1f2e-8a4b-4c7d-9e10-5a6b7c8d9e0f"): ("unknown", 0),
    ("ex13mbx02.tailspin.example", None): ("unsupported", 1),
    ("ex16edge01.contoso.example", "contoso.example"): ("outdated", 1),
    ("ex16edge01.proseware.example", None): ("outdated", 1),
    ("ex16mbx01.contoso.example", "contoso.example"): ("outdated", 1),
    ("ex16mbx07.contoso.example", None): ("outdated", 1),
    ("ex19mbx01.fabrikam.example", "fabrikam.example"): ("outdated", 1),
    ("ex19mbx05.fourthcoffee.example", None): ("outdated", 1),
    ("lists.northwind.example", None): ("unknown", 0),
    ("lists.proseware.example", None): ("unknown", 0),
    ("mail.adatum.example", None): ("unknown", 0),
    ("mail.adventure-works.example", None): ("outdated", 1),
    ("mail.fabrikam.example", None): ("unsupported", 1),
    ("mail.graphicdesigninstitute.example", None): ("unknown", 0),
    ("mail.litware.example", None): ("outdated", 1),
    ("mail.lucernepublishing.example", None): ("outdated", 1),
    ("mail.proseware.example", None): ("unknown", 0),
    ("mail.woodgrove.example", None): ("unknown", 0),
    ("mail19.fabrikam.example", None): ("outdated", 1),
    ("mail19.fabrikam.example", "fabrikam.example"): ("outdated", 1),
    ("mta1.treyresearch.example", None): ("unknown", 0),
    ("mx.northwind.example", None): ("unknown", 0),
    ("mx01.alpineskihouse.example", None): ("unknown", 0),
    ("relay.northwind.example", None): ("unknown", 0),
    ("server.hostingco.example", None): ("unknown", 0),
    ("smtp.adatum.example", None): ("unsupported", 1),
    ("smtp.relecloud.example", None): ("unknown", 0),
    ("smtp.tailspin.example", None): ("unknown", 0),
    ("smtp2.woodgrove.example", None): ("unsupported", 1),
}


def latest_by_server(decisions):
    latest: dict[tuple[str, str | None], Decision] = {}
    for decision in decisions:
        key = (decision.hostname, decision.org)
        if key not in latest or decision.version > latest[key].version:
            latest[key] = decision
    return latest


def assert_expected_without_gaps(decisions):
    """The latest decision of each server is EXPECTED's, and its versions run 1..n; returns them."""
    latest = latest_by_server(decisions)
    assert {key: (d.status, d.stage) for key, d in latest.items()} == EXPECTED
    for key, decision in latest.items():
        versions = sorted(d.version for d in decisions if (d.hostname, d.org) == key)
        assert versions == list(range(1, decision.version + 1)), key
    return latest


def test_every_format_yields_the_expected_decisions(mixed_run):
    latest = assert_expected_without_gaps(read_decisions(mixed_run.settings))
    relayed = latest[("ex16mbx01.contoso.example", "contoso.example")]
    assert relayed.reason.endswith("behind relay ex16edge01.contoso.example, report only")


def test_clickhouse_holds_decisions_servers_and_traffic(mixed_run):
    settings = mixed_run.settings
    decisions = read_decisions(settings)
    stored = client.sql(settings, "SELECT hostname, org, version FROM decisions FINAL ORDER BY hostname, org, version")
    assert sorted(map(tuple, stored["rows"]), key=str) == sorted(
        ((d.hostname, d.org, d.version) for d in decisions), key=str)
    servers = client.sql(settings, "SELECT server, org, status, stage FROM servers ORDER BY server, org")
    assert {(s, o): (st, stage) for s, o, st, stage in servers["rows"]} == EXPECTED
    traffic = client.sql(settings, "SELECT server_id, day, messages, bytes FROM traffic_daily WHERE server_id IN "
                                   "('3f6c1f2e-8a4b-4c7d-9e10-5a6b7c8d9e0f/ex13hyb01.contoso.example', "
                                   "'mail.fabrikam.example') ORDER BY server_id, day")
    assert traffic["rows"] == [
        ["3f6c1f2e-8a4b-4c7d-9e10-5a6b7c8d9e0f/ex13hyb01.contoso.example", "2026-02-17", 1, 48213],
        ["3f6c1f2e-8a4b-4c7d-9e10-5a6b7c8d9e0f/ex13hyb01.contoso.example", "2026-03-20", 1, 9120],
        ["mail.fabrikam.example", "2026-02-11", 1, 0],
        ["mail.fabrikam.example", "2026-02-20", 1, 8342],
    ]


def test_report_page_and_read_only_sql_through_the_worker(mixed_run):
    settings = mixed_run.settings
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/report.html", timeout=30) as page:
        html = page.read().decode()
    table = html[html.index("class='servers'"):]
    assert table.count("<tr>") == len(EXPECTED) + 1
    assert ">ex16edge01.contoso.example</a></td>" in table
    rows = client.report(settings)
    # ClickHouse sorts NULL last.
    assert [(r["server"], r["org"]) for r in rows] == sorted(EXPECTED, key=lambda k: (k[0], k[1] is None, k[1] or ""))
    with pytest.raises(client.QueryError, match="readonly"):
        client.sql(settings, "DROP TABLE decisions")


def test_the_stream_agrees_with_evaluate(mixed_run):
    """Each server's latest decision equals `patchgate evaluate --at <its last event>` on the same files."""
    settings = mixed_run.settings
    latest = latest_by_server(read_decisions(settings))
    last_seen = {(s, o): t for s, o, t in client.sql(settings, "SELECT server, org, last_seen FROM servers")["rows"]}
    policy_settings = load_settings(CONFIG, environ={})
    for key, decision in latest.items():
        out, errors = io.StringIO(), io.StringIO()
        evaluate(policy_settings, [str(SAMPLES)], last_seen[key], out, errors)
        rows = {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}
        assert rows[key] == evaluate_row(decision), key


def test_replaying_the_same_input_changes_nothing(mixed_run, drained, read_topic):
    settings = mixed_run.settings
    decisions_before = len(read_topic(settings, "mail.decisions"))
    counts = ("SELECT (SELECT count() FROM decisions FINAL), (SELECT count() FROM server_messages FINAL), "
              "(SELECT sum(messages) FROM traffic_daily)")
    before = client.sql(settings, counts)["rows"]
    assert ship(settings, [str(SAMPLES)]) == mixed_run.shipped
    drained(settings, mixed_run.worker)
    assert len(read_topic(settings, "mail.decisions")) == decisions_before
    assert client.sql(settings, counts)["rows"] == before
