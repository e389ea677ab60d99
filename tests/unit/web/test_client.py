"""Without a worker on the web port, the embedded ClickHouse folder is opened directly."""
import socket

import pytest

from pipeline.settings import Settings
from pipeline.sinks.clickhouse import connect, create_tables, insert_decisions
from pipeline.web import client


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_report_and_sql_read_the_folder_when_no_worker_runs(tmp_path, make_decision):
    settings = Settings(data_dir=tmp_path, web_port=free_port())
    direct = connect(settings.clickhouse_dsn)
    create_tables(direct)
    insert_decisions(direct, [make_decision(1, 1)], "t:0:0-0")
    direct.close()
    assert [row["server"] for row in client.report(settings)] == ["ex13mbx01.contoso.example"]
    assert client.sql(settings, "SELECT count() AS n FROM decisions") == {"columns": ["n"], "rows": [[1]]}
    with pytest.raises(client.QueryError, match="readonly"):
        client.sql(settings, "DROP TABLE decisions")
