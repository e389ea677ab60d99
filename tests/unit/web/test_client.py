"""Without a worker on the web port, the embedded ClickHouse folder is opened directly; with one, the
query goes through it."""
import asyncio
from typing import cast

import faust
import pytest
from aiohttp.test_utils import TestServer
from faust.web.drivers.aiohttp import Web

from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import connect, create_tables, insert_decisions
from pipeline.streaming.metrics import Metrics
from pipeline.web import client, views
from testkit.ports import free_port


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


@pytest.mark.parametrize("tokens", [{"web_view_token": "viewer-token-0123456789"},
                                    {"web_token": "operator-token-0123456789"}])
def test_report_and_sql_bring_the_token_to_a_sink_bound_beyond_loopback(monkeypatch, tokens):
    monkeypatch.setattr(views.queries, "report", lambda client: [{"server": "ex13mbx01.contoso.example"}])
    monkeypatch.setattr(views.queries, "run_sql", lambda client, query: {"columns": ["q"], "rows": [[query]]})
    # Connecting to 0.0.0.0 reaches the sink listening on 127.0.0.1.
    settings = Settings(web_host="0.0.0.0", web_port=free_port(), **tokens)
    app = faust.App("pg-client", broker="kafka://127.0.0.1:1", store="memory://")
    views.register_ops(app, lambda: {"status": "ok"}, Metrics(), settings)

    async def read(fn):
        return fn("client")

    views.register_reports(app, read, settings, load_catalog())

    async def ask():
        async with TestServer(cast(Web, app.web).web_app, host="127.0.0.1", port=settings.web_port):
            return (await asyncio.to_thread(client.report, settings),
                    await asyncio.to_thread(client.sql, settings, "SELECT 1"))

    assert asyncio.run(ask()) == ([{"server": "ex13mbx01.contoso.example"}], {"columns": ["q"], "rows": [["SELECT 1"]]})
