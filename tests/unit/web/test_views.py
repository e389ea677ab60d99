"""The web views on Faust's aiohttp server, called over HTTP without a broker: a bare app with the
views registered, health and ClickHouse reads stood in for."""
import asyncio

import faust
import orjson
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from multidict import CIMultiDictProxy
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
OUTDATED_ID = "contoso.example/ex16mbx01.contoso.example"  # the outdated_page fixture's server
VIEW_TOKEN = "viewer-token-0123456789"


def app_with_views(health=lambda: OK, read=None, settings=None) -> tuple[faust.App, Metrics]:
    app = faust.App("pg-views", broker="kafka://127.0.0.1:1", store="memory://", web_port=6066)
    metrics = Metrics()
    metrics.watch(app)
    settings = settings or Settings()
    views.register_ops(app, health, metrics, settings)
    views.register_reports(app, read, settings, load_catalog())
    return app, metrics


class Raw(bytes):
    """A body sent as it is, with the Content-Type its request's headers give (or none)."""


class Form(dict):
    """A body sent form-encoded, as a browser sends a form."""


def answers(app_and_metrics, *requests: tuple) -> list[tuple[int, CIMultiDictProxy[str], bytes]]:
    """(status, headers, body) of each (method, path[, body[, headers]]) sent to the app's web server, in
    one event loop (the aiohttp application is bound to the first one that serves it). A body is sent as
    JSON unless it is Raw or a Form; redirects are answers, not followed; no cookie is kept."""
    app, _ = app_and_metrics

    def sent(body):
        if body is None:
            return {}
        return {"data": body} if isinstance(body, Raw | Form) else {"json": body}

    async def call():
        async with TestClient(TestServer(app.web.web_app), cookie_jar=DummyCookieJar()) as client:
            answered = []
            for method, path, *rest in requests:
                body, headers = (rest + [None, None])[:2]
                response = await client.request(method, path, headers=headers, allow_redirects=False, **sent(body))
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


@pytest.fixture
def report(monkeypatch, servers, outdated_page):
    """The report's reads stood in for: the servers and one server's page; the report's paths."""
    overview = {"newest_event": "2026-02-08T10:00:00.000Z", "servers": servers, "control": []}
    monkeypatch.setattr(views.report_queries, "overview", lambda client: overview)
    monkeypatch.setattr(views.report_queries, "server_page", lambda client, server_id: outdated_page)
    monkeypatch.setattr(views.queries, "report", lambda client: [ROW])
    monkeypatch.setattr(views.queries, "run_sql", lambda client, query: {"columns": ["q"], "rows": [[query]]})
    return ("/report", "/report.html", "/report.csv", "/api/summary", "/api/servers", f"/api/servers/{OUTDATED_ID}",
            f"/servers/{OUTDATED_ID}", "/metrics")


BEYOND = Settings(web_host="0.0.0.0", web_token=TOKEN, web_view_token=VIEW_TOKEN)


@pytest.mark.parametrize(("settings", "headers", "status"), [
    (Settings(), None, 200),                                                # loopback: open, as before
    (Settings(web_host="::1", web_view_token=VIEW_TOKEN), None, 200),
    (Settings(web_host="0.0.0.0"), bearer(VIEW_TOKEN), 403),                # beyond loopback, no token set
    (BEYOND, None, 401),
    (BEYOND, bearer("wrong-token-0123456789"), 401),
    (BEYOND, {"Authorization": f"Basic {VIEW_TOKEN}"}, 401),
    (BEYOND, bearer(VIEW_TOKEN), 200),
    (BEYOND, bearer(TOKEN), 200),                                           # the operator reads too
    (Settings(web_host="10.0.0.5", web_token=TOKEN), bearer(TOKEN), 200),
])
def test_the_report_its_api_server_pages_and_metrics_need_a_token_beyond_loopback(report, settings, headers, status):
    answered = answers(app_with_views(read=read, settings=settings), *[("GET", path, None, headers) for path in report])
    statuses = [(path, answer[0]) for path, answer in zip(report, answered, strict=True)]
    assert statuses == [(path, status) for path in report]
    for _, answered_headers, body in answered:
        assert (answered_headers.get("WWW-Authenticate") == "Bearer") == (status == 401)
        if status == 403:
            assert orjson.loads(body) == {"error": "reading a web port bound to 0.0.0.0 needs a token: set "
                                                   "web_view_token (PATCHGATE_WEB_VIEW_TOKEN), or web_token "
                                                   "(PATCHGATE_WEB_TOKEN)"}


def test_beyond_loopback_health_stays_open_and_every_other_page_is_guarded(report):
    answered = answers(app_with_views(read=read, settings=BEYOND), ("GET", "/health"), ("GET", "/healthz"),
                       ("GET", "/table/server-state/"), ("GET", "/table/server-state/", None, bearer(VIEW_TOKEN)))
    # A page the port does not have (as Faust's own /table pages, when served) is not even said to be missing.
    assert [status for status, _, _ in answered] == [200, 200, 401, 404]


def test_the_viewer_token_reads_and_queries_but_only_the_operator_token_controls(report, submitted):
    pause = {"action": "pause", "target": "contoso.example", "days": 5, "reason": "migration"}
    sql = {"query": "SELECT 1"}
    answered = answers(app_with_views(read=read, settings=BEYOND),
                       ("POST", "/sql", sql, bearer(VIEW_TOKEN)), ("POST", "/sql", sql, bearer(TOKEN)),
                       ("POST", "/control", pause, bearer(VIEW_TOKEN)), ("POST", "/control", pause, bearer(TOKEN)))
    assert [status for status, _, _ in answered] == [200, 200, 401, 200]
    assert submitted == [pause]
    [(on_loopback, _, _)] = answers(app_with_views(settings=Settings(web_token=TOKEN, web_view_token=VIEW_TOKEN)),
                                    ("POST", "/control", pause, bearer(VIEW_TOKEN)))
    assert on_loopback == 401 and submitted == [pause]


def test_a_browser_logs_in_with_the_form_and_reads_with_the_cookie(report, submitted):
    page = f"/servers/{OUTDATED_ID}"
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    asked, form, wrong, logged_in = answers(
        app_with_views(read=read, settings=BEYOND), ("GET", page, None, html), ("GET", f"/login?next={page}"),
        ("POST", "/login", Form(token="wrong-token-0123456789", next=page), html),
        ("POST", "/login", Form(token=VIEW_TOKEN, next=page), html))
    # Without a token, a browser is shown the form, which leads back to the page asked for.
    assert asked[0] == 401 and b"<form method='post' action='/login'>" in asked[2]
    assert f"name='next' value='{page}'".encode() in asked[2] and f"value='{page}'".encode() in form[2]
    # SameSite=Strict: a link from another site (a notice in a mail) comes without the cookie; a link
    # of the form's own page brings it.
    assert f"<a id='again' href='{page}'>".encode() in asked[2]
    assert wrong[0] == 401 and b"That is not a token of this port." in wrong[2]
    assert (logged_in[0], logged_in[1]["Location"]) == (303, page)
    [cookie] = logged_in[1].getall("Set-Cookie")
    name, value = cookie.split(";")[0].split("=", 1)
    assert name == "patchgate_session" and VIEW_TOKEN not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert "secure" not in cookie.lower()  # set over plain http, a Secure cookie would be dropped

    with_cookie = html | {"Cookie": f"patchgate_session={value}"}
    pause = {"action": "pause", "target": "contoso.example", "days": 5, "reason": "migration"}
    read_page, csv_rows, forged, sql, control, logout = answers(
        app_with_views(read=read, settings=BEYOND), ("GET", page, None, with_cookie),
        ("GET", "/report.csv", None, with_cookie),
        ("GET", page, None, html | {"Cookie": f"patchgate_session={VIEW_TOKEN}"}),
        ("POST", "/sql", {"query": "SELECT 1"}, with_cookie), ("POST", "/control", pause, with_cookie),
        ("GET", "/logout", None, with_cookie))
    assert (read_page[0], csv_rows[0]) == (200, 200) and b"From 2026-02-11, stage 3" in read_page[2]
    assert forged[0] == 401                                 # the token itself is no cookie
    assert (sql[0], control[0], submitted) == (401, 401, [])  # POSTs never take the cookie
    assert (logout[0], logout[1]["Location"]) == (303, "/login")
    assert logout[1]["Set-Cookie"].startswith('patchgate_session=""; ') and "Max-Age=0" in logout[1]["Set-Cookie"]


@pytest.mark.parametrize(("headers", "secure"), [
    ({}, False),
    ({"X-Forwarded-Proto": "https"}, True),
    ({"X-Forwarded-Proto": "HTTPS, http"}, True),
    ({"X-Forwarded-Proto": "http"}, False),
])
def test_the_cookie_is_secure_when_the_browser_came_over_https(headers, secure):
    [(status, answered_headers, _)] = answers(app_with_views(settings=BEYOND),
                                              ("POST", "/login", Form(token=TOKEN), headers))
    assert status == 303 and answered_headers["Location"] == "/report.html"
    assert ("; Secure" in answered_headers["Set-Cookie"]) == secure


@pytest.mark.parametrize("next_path", ["//evil.example/report.html", "/\\evil.example", "https://evil.example/",
                                       "report.html", ""])
def test_login_leads_only_to_pages_of_this_port(next_path):
    [(status, headers, _)] = answers(app_with_views(settings=BEYOND),
                                     ("POST", "/login", Form(token=VIEW_TOKEN, next=next_path)))
    assert (status, headers["Location"]) == (303, "/report.html")


def test_login_without_any_token_configured_says_which_to_set():
    [(status, _, body)] = answers(app_with_views(settings=Settings(web_host="0.0.0.0")),
                                  ("POST", "/login", Form(token=VIEW_TOKEN)))
    assert status == 403 and b"PATCHGATE_WEB_VIEW_TOKEN" in body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_sql_and_control_take_only_json(report, submitted, content_type):
    """What a page of another site can make a browser send without asking first (CSRF) is refused."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = Raw(b'{"query": "SELECT 1"}')
    sql, control_command, preflight = answers(
        app_with_views(read=read, settings=Settings(web_token=TOKEN)), ("POST", "/sql", body, headers),
        ("POST", "/control", Raw(b'{"action": "resume", "target": "x.example"}'), headers | bearer(TOKEN)),
        ("OPTIONS", "/sql", None, {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                                   "Access-Control-Request-Headers": "content-type"}))
    assert (sql[0], control_command[0], submitted) == (415, 415, [])
    assert b"send the body as Content-Type: application/json" in sql[2]
    assert preflight[0] == 405 and "Access-Control-Allow-Origin" not in preflight[1]


def test_a_body_that_is_not_json_is_a_400_that_says_so(report, submitted):
    json_type = {"Content-Type": "application/json"}
    sql, control_command, latin1 = answers(
        app_with_views(read=read, settings=Settings(web_token=TOKEN)), ("POST", "/sql", Raw(b"{query: 1"), json_type),
        ("POST", "/control", Raw(b"pause contoso.example"), json_type | bearer(TOKEN)),
        ("POST", "/sql", Raw('{"query": "SELECT \'\xe9\'"}'.encode("latin-1")), json_type))
    assert [status for status, _, _ in (sql, control_command, latin1)] == [400, 400, 400]
    assert all(orjson.loads(body)["error"].startswith("the body is not JSON: ") for _, _, body in
               (sql, control_command, latin1))
    assert submitted == []


@pytest.mark.parametrize(("settings", "method", "path", "host", "status"), [
    # On loopback, every route: a page of another site whose name now points at 127.0.0.1 (DNS rebinding).
    (Settings(), "GET", "/report.html", "rebound.evil.example:6066", 421),
    (Settings(), "GET", "/healthz", "rebound.evil.example", 421),
    (Settings(), "POST", "/sql", "rebound.evil.example:6066", 421),
    (Settings(), "GET", "/report.html", "127.0.0.1.evil.example", 421),
    (Settings(), "GET", "/report.html", "", 421),
    (Settings(), "GET", "/report.html", "localhost:6066", 200),
    (Settings(), "GET", "/report.html", "LOCALHOST.", 200),
    (Settings(), "GET", "/report.html", "[::1]:6066", 200),
    (Settings(), "POST", "/sql", "127.0.0.1", 200),
    (Settings(web_hostnames=("reports.example",)), "GET", "/report.html", "Reports.Example:8443", 200),
    (Settings(web_host="::1"), "GET", "/report.html", "[0:0:0:0:0:0:0:1]:6066", 200),
    # Beyond loopback, only SQL and control (reads need the token there).
    (BEYOND, "GET", "/report.html", "rebound.evil.example", 200),
    (BEYOND, "POST", "/sql", "rebound.evil.example", 421),
    (BEYOND, "POST", "/control", "sink.example:6066", 421),
    (BEYOND, "POST", "/sql", "0.0.0.0:6066", 200),                     # what `patchgate sql` sends
    (BEYOND, "POST", "/sql", "localhost:6066", 200),                   # bound to every address, loopback too
    (Settings(web_host="10.0.0.5", web_token=TOKEN), "POST", "/sql", "localhost", 421),
    (Settings(web_host="10.0.0.5", web_token=TOKEN), "POST", "/sql", "10.0.0.5:6066", 200),
    (Settings(web_host="0.0.0.0", web_token=TOKEN, web_hostnames=("sink.example", "192.0.2.7")), "POST", "/control",
     "sink.example:6066", 200),
    (Settings(web_host="0.0.0.0", web_token=TOKEN, web_hostnames=("sink.example", "192.0.2.7")), "POST", "/sql",
     "192.0.2.7", 200),
])
def test_requests_naming_a_host_the_port_does_not_answer_for_are_misdirected(report, submitted, settings, method,
                                                                            path, host, status):
    body = {"query": "SELECT 1"} if path == "/sql" else {"action": "resume", "target": "x.example"}
    [(answered, _, answer)] = answers(app_with_views(read=read, settings=settings),
                                      (method, path, body if method == "POST" else None,
                                       {"Host": host} | bearer(TOKEN)))
    assert answered == status
    if status == 421:
        assert b"add the name to web_hostnames (PATCHGATE_WEB_HOSTNAMES)" in answer


def test_the_login_form_keeps_the_page_asked_for_escaped():
    [(status, _, body)] = answers(app_with_views(), ("GET", "/login?next=/report.html%3Forg%3D'%3E%3Cscript%3E"))
    # &#39; is the quote as MarkupSafe (the templates' escaping) writes it.
    assert status == 200 and b"name='next' value='/report.html?org=&#39;&gt;&lt;script&gt;'" in body
