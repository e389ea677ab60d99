import pytest

from pipeline.sinks.clickhouse import connect, create_tables, insert_decisions
from pipeline.sinks.queries import REPORT_COLUMNS, report, run_sql


@pytest.fixture
def client(tmp_path, make_decision):
    client = connect(f"chdb://{tmp_path}/ch")
    create_tables(client)
    insert_decisions(client, [make_decision(1, 1), make_decision(2, 2)], "t:0:0-1")
    yield client
    client.close()


def test_report_rows_are_json_ready(client):
    [row] = report(client)
    assert tuple(row) == REPORT_COLUMNS
    assert (row["server"], row["stage"], row["first_detected"], row["next_stage_start_date"]) == (
        "ex13mbx01.contoso.example", 2, "2026-01-02T23:53:27.000Z", "2026-02-11")
    assert (row["last_seen"], row["messages_last_24h"]) == (None, None)


def test_sql_is_read_only(client):
    assert run_sql(client, "SELECT version FROM decisions ORDER BY version") == {
        "columns": ["version"], "rows": [[1], [2]]}
    with pytest.raises(Exception, match="readonly"):
        run_sql(client, "DROP TABLE decisions")
    with pytest.raises(Exception, match="readonly"):
        run_sql(client, "INSERT INTO decisions (server_id) VALUES ('x')")


def test_sql_has_time_and_result_limits_that_a_query_cannot_raise(client):
    assert run_sql(client, "SELECT getSetting('max_execution_time') AS t")["rows"] == [[10]]
    with pytest.raises(Exception, match="TOO_MANY_ROWS"):
        run_sql(client, "SELECT number FROM system.numbers LIMIT 20000")
    with pytest.raises(Exception, match="readonly"):
        run_sql(client, "SELECT number FROM system.numbers LIMIT 20000 SETTINGS max_result_rows = 0")
    assert len(report(client)) == 1  # the report's own reads are not an analyst's
