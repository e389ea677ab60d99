from datetime import date

from pipeline.sinks.clickhouse import ClickHouseSink, connect, create_tables


def test_batches_land_once_even_when_replayed(tmp_path, make_decision):
    """The real ClickHouse engine (embedded chdb): a replayed batch with the same token is dropped."""
    client = connect(f"chdb://{tmp_path}/ch")
    create_tables(client)
    create_tables(client)  # idempotent at every start
    sink = ClickHouseSink(client)
    batch = [make_decision(1, 1), make_decision(2, 2)]
    sink.write_decisions(batch, "mail.decisions:0:0-1")
    sink.write_decisions(batch, "mail.decisions:0:0-1")
    rows = client.query("SELECT version, stage FROM decisions ORDER BY version").result_rows
    assert rows == [(1, 1), (2, 2)]
    latest = client.query("SELECT server, stage, version, next_stage_start_date FROM servers FINAL").result_rows
    assert latest == [("ex13mbx01.contoso.example", 2, 2, date(2026, 2, 11))]
    # The embedded engine serves one folder per process: let the next test open its own.
    client.close()
