"""The web views on Faust's aiohttp server, called over HTTP without a broker: a bare app with the
views registered, health and ClickHouse reads stood in for."""
import asyncio

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from prometheus_client.parser import text_string_to_metric_families

from pipeline.catalog_files import load_catalog
from pipeline.edges import control
from pipeline.settings import Settings
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


TOKEN = "s3cret-token-0123456789"


def app_with_views(health=lambda: OK, read=None, settings=None) -> tuple[faust.App, Metrics]:
    app = faust.App("pg-views", broker="kafka://127.0.0.1:1", store="memory://", web_port=6066)
    metrics = Metrics()
    metrics.watch(app)
    views.register_ops(app, health, metrics)
    views.register_reports(app, read, settings or Settings(), load_catalog())
    return app, metrics


def answers(app_and_metrics, *requests: tuple) -> list[tuple[int, dict, bytes]]:
    """(status, headers, body) of each (method, path[, json body[, headers]]) sent to the app's web server, in
    one event loop (the aiohttp application is bound to the first one that serves it)."""
    app, _ = app_and_metrics

    async def call():
        async with TestClient(TestServer(app.web.web_app)) as client:
            answered = []
            for method, path, *rest in requests:
                body, headers = (rest + [None, None])[:2]
                response = await client.request(method, path, headers=headers,
                                                **({"json": body} if body is not None else {}))
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
    paths = ("/report", "/report.html", "/report.csv", "/api/summary", "/api/servers", "/api/servers/a.example",
             "/servers/a.example")
    answered = answers(app_with_views(read=busy), *[("GET", path) for path in paths],
                       ("POST", "/sql", {"query": "SELECT 1"}))
    assert [(status, headers["Retry-After"]) for status, headers, _ in answered] == [(503, "2")] * (len(paths) + 1)
    assert all(b"still busy with an earlier read" in body for _, _, body in answered)


async def read(fn):
    return fn("client")


def test_report_and_sql_answer_what_clickhouse_returns(monkeypatch):
    def run_sql(client, query):
        if query.startswith("SELECT number"):
            raise RuntimeError("Code: 396. DB::Exception: Limit for result exceeded, max rows: 10.00 thousand. "
                               "(TOO_MANY_ROWS_OR_BYTES)")
        return {"columns": ["q"], "rows": [[query]]}

    monkeypatch.setattr(views.queries, "report", lambda client: [ROW])
    monkeypatch.setattr(views.queries, "run_sql", run_sql)
    report, answered, refused, empty = answers(
        app_with_views(read=read), ("GET", "/report"), ("POST", "/sql", {"query": "SELECT 1"}),
        ("POST", "/sql", {"query": "SELECT number FROM system.numbers"}), ("POST", "/sql", {"query": " "}))
    assert (report[0], orjson.loads(report[2])) == (200, [ROW])
    assert (answered[0], orjson.loads(answered[2])) == (200, {"columns": ["q"], "rows": [["SELECT 1"]]})
    assert refused[0] == 400 and b"TOO_MANY_ROWS_OR_BYTES" in refused[2]
    assert empty[0] == 400


def test_report_pages_and_api_serve_the_same_rows(monkeypatch, servers, outdated_page):
    monkeypatch.setattr(views.report_queries, "overview",
                        lambda client: {"newest_event": "2026-02-08T10:00:00.000Z", "servers": servers, "control": []})
    pages = {outdated_page["row"]["server_id"]: outdated_page}
    monkeypatch.setattr(views.report_queries, "server_page", lambda client, server_id: pages.get(server_id))
    html_page, listed, csv_rows, summary, page, api, unknown, unknown_api, bad = answers(
        app_with_views(read=read), ("GET", "/report.html?status=outdated"), ("GET", "/api/servers?sort=-stage"),
        ("GET", "/report.csv?stage=0"), ("GET", "/api/summary"),
        ("GET", "/servers/contoso.example/ex16mbx01.contoso.example"),
        ("GET", "/api/servers/contoso.example%2Fex16mbx01.contoso.example"), ("GET", "/servers/nope.example"),
        ("GET", "/api/servers/nope.example"), ("GET", "/report.html?stage=x"))
    assert html_page[0] == 200 and b">ex16mbx01.contoso.example</a>" in html_page[2]
    assert b">ex13mbx01.contoso.example</a></td>" not in html_page[2]  # filtered out of the table
    assert [row["stage"] for row in orjson.loads(listed[2])] == [2, 1, 0]
    assert (csv_rows[1]["Content-Type"].split(";")[0], csv_rows[2].decode().splitlines()[1].split(",")[0]) == (
        "text/csv", "mail.example")
    assert orjson.loads(summary[2])["upcoming"][0]["starts"] == "2026-02-11"
    assert page[0] == 200 and b"From 2026-02-11, stage 3" in page[2]
    assert orjson.loads(api[2])["next"].startswith("From 2026-02-11, stage 3")
    assert (unknown[0], unknown_api[0], bad[0]) == (404, 404, 400)
    assert b"stage must be a stage number" in bad[2]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("settings", "headers", "status"), [
    (Settings(), None, 200),                                               # loopback: no token needed
    (Settings(web_host="::1"), None, 200),
    (Settings(web_host="0.0.0.0"), None, 403),                             # beyond loopback, no token set
    (Settings(web_host="0.0.0.0", web_token=TOKEN), None, 401),
    (Settings(web_host="0.0.0.0", web_token=TOKEN), bearer("wrong-token-0123456789"), 401),
    (Settings(web_host="0.0.0.0", web_token=TOKEN), bearer(TOKEN), 200),
])
def test_sql_beyond_loopback_needs_the_token(monkeypatch, settings, headers, status):
    monkeypatch.setattr(views.queries, "run_sql", lambda client, query: {"columns": [], "rows": []})
    [(answered, answered_headers, _)] = answers(app_with_views(read=read, settings=settings),
                                                ("POST", "/sql", {"query": "SELECT 1"}, headers))
    assert answered == status
    assert (answered_headers.get("WWW-Authenticate") == "Bearer") == (status == 401)


@pytest.fixture
def submitted(monkeypatch):
    """pipeline.edges.control.submit stood in for: what it was given."""
    given = []

    def submit(settings, payload):
        if not isinstance(payload, dict) or payload.get("action") not in ("pause", "resume", "exempt", "unexempt"):
            raise ValueError("action must be pause, resume, exempt or unexempt")
        given.append(payload)
        return {"command_id": "c-1", "sent": True}

    monkeypatch.setattr(control, "submit", submit)
    return given


def test_control_needs_the_token_also_on_loopback(submitted):
    pause = {"action": "pause", "target": "contoso.example", "days": 5, "reason": "migration"}
    without_token, wrong, with_token, bad, not_json = answers(
        app_with_views(settings=Settings(web_token=TOKEN)), ("POST", "/control", pause),
        ("POST", "/control", pause, bearer("wrong-token-0123456789")), ("POST", "/control", pause, bearer(TOKEN)),
        ("POST", "/control", {"action": "drop"}, bearer(TOKEN)), ("POST", "/control", ["pause"], bearer(TOKEN)))
    assert [a[0] for a in (without_token, wrong, with_token, bad, not_json)] == [401, 401, 200, 400, 400]
    assert orjson.loads(with_token[2]) == {"command_id": "c-1", "sent": True}
    assert b"action must be" in bad[2]
    assert submitted == [pause]
    [(unconfigured, _, body)] = answers(app_with_views(), ("POST", "/control", pause, bearer(TOKEN)))
    assert unconfigured == 403 and b"PATCHGATE_WEB_TOKEN" in body
    assert submitted == [pause]


@pytest.mark.parametrize(("refusal", "status", "said"), [
    (TopicAuthorizationFailedError("mail.control"), 403, b"may not write mail.control"),
    (KafkaTimeoutError("no broker"), 503, b"the command was not sent"),
])
def test_a_command_the_broker_does_not_take_is_answered_with_why(monkeypatch, refusal, status, said):
    def submit(settings, payload):
        raise refusal

    monkeypatch.setattr(control, "submit", submit)
    [(answered, _, body)] = answers(app_with_views(settings=Settings(web_token=TOKEN)),
                                    ("POST", "/control", {"action": "resume", "target": "x.example"}, bearer(TOKEN)))
    assert answered == status and said in body
