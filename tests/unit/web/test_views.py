"""The web views on Faust's aiohttp server, called over HTTP without a broker: a bare app with the
views registered, health and ClickHouse reads stood in for."""
import asyncio

import faust
import orjson
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from pipeline.sinks.queries import REPORT_COLUMNS
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.storage import ClickHouseBusy
from pipeline.web import views

ROW = dict.fromkeys(REPORT_COLUMNS) | {"server": "ex13mbx01.contoso.example", "stage": 6}
OK = {"status": "ok", "clickhouse_writes": {"failing_for_s": None, "failures": 0, "last_error": None},
      "paused_partitions": []}
DEGRADED = {"status": "degraded",
            "clickhouse_writes": {"failing_for_s": 12.5, "failures": 9, "last_error": "Connection refused"},
            "paused_partitions": ["mail.observations/0"]}


def app_with_views(health=lambda: OK, read=None) -> tuple[faust.App, Metrics]:
    app = faust.App("pg-views", broker="kafka://127.0.0.1:1", store="memory://", web_port=6066)
    metrics = Metrics()
    metrics.watch(app)
    views.register_ops(app, health, metrics)
    views.register_reports(app, read)
    return app, metrics


def answers(app_and_metrics, *requests: tuple) -> list[tuple[int, dict, bytes]]:
    """(status, headers, body) of each (method, path[, json body]) sent to the app's web server, in
    one event loop (the aiohttp application is bound to the first one that serves it)."""
    app, _ = app_and_metrics

    async def call():
        async with TestClient(TestServer(app.web.web_app)) as client:
            answered = []
            for method, path, *body in requests:
                response = await client.request(method, path, **({"json": body[0]} if body else {}))
                answered.append((response.status, response.headers, await response.read()))
            return answered
    return asyncio.run(call())


def test_health_answers_200_also_when_degraded_and_healthz_503():
    [(healthy, _, _)] = answers(app_with_views(), ("GET", "/healthz"))
    [(health, _, _), (healthz, _, body)] = answers(app_with_views(health=lambda: DEGRADED),
                                                   ("GET", "/health"), ("GET", "/healthz"))
    assert (healthy, health, healthz) == (200, 200, 503)
    assert orjson.loads(body) == DEGRADED


def test_metrics_are_prometheus_text_of_the_app_registry_only():
    served = app_with_views()
    served[1].raw_records.inc(3)
    app_with_views()[1].raw_records.inc(5)  # a second app in the process keeps its own counts
    [(status, headers, body)] = answers(served, ("GET", "/metrics"))
    assert (status, headers["Content-Type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    families = list(text_string_to_metric_families(body.decode()))
    assert {sample.name: sample.value for sample in families[0].samples if sample.name.endswith("_total")} == {
        "patchgate_raw_records_total": 3}
    # Not the global registry's process and garbage collector metrics.
    assert [family.name for family in families if not family.name.startswith("patchgate_")] == []


async def busy(fn):
    raise ClickHouseBusy("ClickHouse is still busy with an earlier read after 2 s; try again")


def test_reads_behind_a_hung_read_answer_503_with_retry_after():
    answered = answers(app_with_views(read=busy), ("GET", "/report"), ("GET", "/report.html"),
                       ("POST", "/sql", {"query": "SELECT 1"}))
    assert [(status, headers["Retry-After"]) for status, headers, _ in answered] == [(503, "2")] * 3
    assert all(b"still busy with an earlier read" in body for _, _, body in answered)


def test_report_and_sql_answer_what_clickhouse_returns(monkeypatch):
    async def read(fn):
        return fn("client")

    def run_sql(client, query):
        if query.startswith("DROP"):
            raise RuntimeError("Code: 164. DB::Exception: Cannot execute query in readonly mode. ")
        return {"columns": ["q"], "rows": [[query]]}

    monkeypatch.setattr(views.queries, "report", lambda client: [ROW])
    monkeypatch.setattr(views.queries, "run_sql", run_sql)
    report, page, answered, refused, empty = answers(
        app_with_views(read=read), ("GET", "/report"), ("GET", "/report.html"),
        ("POST", "/sql", {"query": "SELECT 1"}), ("POST", "/sql", {"query": "DROP TABLE decisions"}),
        ("POST", "/sql", {"query": " "}))
    assert (report[0], orjson.loads(report[2])) == (200, [ROW])
    assert page[0] == 200 and b"<td>ex13mbx01.contoso.example</td>" in page[2]
    assert (answered[0], orjson.loads(answered[2])) == (200, {"columns": ["q"], "rows": [["SELECT 1"]]})
    assert refused[0] == 400 and b"readonly mode" in refused[2]
    assert empty[0] == 400
