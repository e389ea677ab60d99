from datetime import date, datetime, timezone

from pipeline.domain.events import ServerObservation
from pipeline.sinks.clickhouse import connect, create_tables, insert_decisions, insert_observations
from pipeline.streaming import records

AT = datetime(2026, 2, 1, 23, 53, 27, tzinfo=timezone.utc)


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
        latest = client.query("SELECT server, stage, version, next_stage_start_date FROM server_state FINAL").result_rows
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
                                   datetime(2026, 1, 30, tzinfo=timezone.utc), None, "msgtrk-traffic", "<b@x>", 500),
        ]
        insert_observations(client, [records.observation_record(o) for o in seen], "mail.observations:1:0-2")
        insert_decisions(client, [make_decision(1, 1)], "mail.decisions:0:0-0")
        daily = client.query("SELECT day, messages, bytes FROM traffic_daily ORDER BY day").result_rows
        assert daily == [(date(2026, 1, 30), 1, 500), (date(2026, 2, 1), 1, 1000)]
        [row] = client.query("SELECT server, stage, last_seen, messages_last_24h FROM servers").result_rows
        assert row[:2] == ("ex13mbx01.contoso.example", 1)
        assert row[2].replace(tzinfo=timezone.utc) == AT and row[3] == 1
    finally:
        client.close()
