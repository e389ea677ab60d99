from dataclasses import replace
from datetime import UTC, date, datetime

from pipeline.contracts import records
from pipeline.domain.events import ServerObservation
from pipeline.sinks.clickhouse import (
    connect,
    create_tables,
    insert_decisions,
    insert_enforcement,
    insert_observations,
    insert_rows,
)

AT = datetime(2026, 2, 1, 23, 53, 27, tzinfo=UTC)


def test_batches_land_once_even_when_replayed(tmp_path, make_decision):
    """The real ClickHouse engine (embedded chdb): a replayed batch with the same token is dropped."""
    client = connect(f"chdb://{tmp_path}/ch")
    try:
        create_tables(client)
        create_tables(client)  # idempotent at every start
        batch = [make_decision(1, 1), make_decision(2, 2)]
        insert_decisions(client, batch, "mail.decisions:0:0-1")
        insert_decisions(client, batch, "mail.decisions:0:0-1")
        # The same rows cut into another batch (a replay after a crash) fold by their sorting key.
        insert_decisions(client, batch[1:], "mail.decisions:0:1-1")
        rows = client.query("SELECT version, stage FROM decisions FINAL ORDER BY version").result_rows
        assert rows == [(1, 1), (2, 2)]
        assert client.query("SELECT count() FROM decisions").result_rows == [(3,)]
        latest = client.query(
            "SELECT server, stage, version, next_stage_start_date FROM server_state FINAL").result_rows
        assert latest == [("ex13mbx01.contoso.example", 2, 2, date(2026, 2, 11))]
    finally:
        # The embedded engine serves one folder per process: let the next test open its own.
        client.close()


def test_traffic_and_the_servers_view(tmp_path, make_decision):
    client = connect(f"chdb://{tmp_path}/ch")
    try:
        create_tables(client)
        seen = [
            ServerObservation.once("ex13mbx01.contoso.example", "ex13mbx01.contoso.example", None, AT, "15.0.1497.2",
                                   "msgtrk-version", "<a@x>", 1000),
            ServerObservation.once("ex13mbx01.contoso.example", "ex13mbx01.contoso.example", None, AT, "15.0.1497.2",
                                   "msgtrk-version", "<a@x>", 1000),  # the SEND row of the same message
            ServerObservation.once("ex13mbx01.contoso.example", "ex13mbx01.contoso.example", None,
                                   datetime(2026, 1, 30, tzinfo=UTC), None, "msgtrk-traffic", "<b@x>", 500),
        ]
        insert_observations(client, [records.observation_record(o) for o in seen], "mail.observations:1:0-2")
        insert_decisions(client, [make_decision(1, 1)], "mail.decisions:0:0-0")
        daily = client.query("SELECT day, messages, bytes FROM traffic_daily ORDER BY day").result_rows
        assert daily == [(date(2026, 1, 30), 1, 500), (date(2026, 2, 1), 1, 1000)]
        [row] = client.query("SELECT server, stage, last_seen, messages_last_24h FROM servers").result_rows
        assert row[:2] == ("ex13mbx01.contoso.example", 1)
        assert row[2].replace(tzinfo=UTC) == AT and row[3] == 1
    finally:
        client.close()


def test_tables_from_before_report_only_get_its_column_and_the_view_counts_what_would_have_been(tmp_path,
                                                                                                make_decision):
    client = connect(f"chdb://{tmp_path}/ch")
    try:
        create_tables(client)
        # As a release before report-only mode left them: without the column.
        for table in ("decisions", "server_state"):
            client.command(f"ALTER TABLE {table} DROP COLUMN report_only")
        insert_rows(client, "decisions", [{"server_id": "old", "hostname": "old", "status": "current", "stage": 0,
                                           "throttle_minutes_per_hour": 0, "block_minutes_per_hour": 0,
                                           "recommended_builds": [], "reason": "", "decided_at": AT, "version": 1}],
                    "before")
        create_tables(client)
        assert client.query("SELECT report_only FROM decisions WHERE server_id = 'old'").result_rows == [(False,)]
        reported = replace(make_decision(3, 2), report_only=True)
        insert_decisions(client, [reported], "mail.decisions:0:2-2")
        attempts = [({"server_id": reported.server_id, "hostname": reported.hostname, "org": None, "at": AT,
                      "action": action, "stage": 2, "decision_version": 3, "client_address": None,
                      "helo_name": None}, 0, offset)
                    for offset, action in enumerate(["throttle", "would-throttle", "would-throttle", "would-block"])]
        insert_enforcement(client, attempts, "mail.enforcement:0:0-3")
        assert client.query("SELECT report_only, deferred, rejected, would_defer, would_reject FROM servers"
                            ).result_rows == [(True, 1, 0, 2, 1)]
    finally:
        client.close()
