"""Views on a process's Faust web server.

Every role answers (register_ops):
    GET  /health          {"status": "ok" | "degraded", "clickhouse_writes": {...}, "paused_partitions": [...]};
                          answered without ClickHouse, also while its writes fail
    GET  /healthz         the same, with status 200 when ok and 503 otherwise (for probes and load balancers)
    GET  /metrics         the app's Prometheus metrics (pipeline.streaming.metrics), text format 0.0.4
    GET  /login, POST /login, GET /logout: pipeline.web.access

The sink role answers the reads (register_reports); in embedded mode its process owns the
ClickHouse folder, so reads go through it. Lists take ?org=&status=&stage=&sort= (pipeline.web.summary):
    GET  /report                  every server's report row as JSON
    GET  /report.html             the summary and the servers table, for server owners and operators
    GET  /report.csv              the servers table as CSV
    GET  /servers/<server_id>     one server: what is wrong, what happens next and when, what to install
    GET  /api/summary             the summary as JSON
    GET  /api/servers             the servers table as JSON
    GET  /api/servers/<server_id> one server's page as JSON
    POST /sql             {"query": "SELECT ..."} -> {"columns": [...], "rows": [...]}: read-only, with
                          time and result limits
    POST /control         a control command: pause, resume, exempt, unexempt, report-only, enforce
                          (pipeline.edges.control.submit)

Who may use which, with which token: pipeline.web.access, whose guard register_ops puts in front
of every route of the port.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from kafka.errors import KafkaError, TopicAuthorizationFailedError
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from pipeline.domain.catalog import Catalog
from pipeline.edges import control
from pipeline.settings import Settings
from pipeline.sinks import queries, report_queries
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.storage import ClickHouseBusy
from pipeline.web import access, pages
from pipeline.web.server_detail import server_detail
from pipeline.web.summary import ServerFilter, summarize

ClientCall = Callable[[Callable], Awaitable]


def register_ops(app: faust.App, health: Callable[[], dict], metrics: Metrics, settings: Settings) -> None:
    """`health()` is what /health answers; /metrics reads `metrics` as it is scraped. The web
    port's bind, tokens and host names come from `settings`."""
    access.install(app, settings)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json(health())

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            answer = health()
            return self.json(answer, status=200 if answer["status"] == "ok" else 503)

    @app.page("/metrics")
    class Prometheus(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a content type with a charset unless it comes as a header.
            return self.bytes(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


class Refused(Exception):
    """A request answered otherwise than with its page: the 400 or 503 `response`."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def answering(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """A view method whose helpers raise Refused: the refusal becomes the answer."""
    @functools.wraps(handler)
    async def answer(view: View, request: Request, **kwargs: str) -> Response:
        try:
            return await handler(view, request, **kwargs)
        except Refused as refused:
            return refused.response
    return answer


def register_reports(app: faust.App, with_client: ClientCall, settings: Settings, catalog: Catalog) -> None:
    """`with_client(fn)` runs fn(client) on the reader, whatever the sink's writes are doing. A read
    behind an earlier one that hangs fails fast (ClickHouseBusy): 503 with Retry-After. `settings`
    give the policy's stages; `catalog` the release names of builds. register_ops guards the port."""

    async def read(view: View, fn: Callable) -> Any:
        try:
            return await with_client(fn)
        except ClickHouseBusy as exc:
            raise Refused(_busy(view, exc)) from None

    async def servers_list(view: View, request: Request) -> tuple[dict, list[dict], ServerFilter]:
        """The overview, the rows the query string chooses, and its filter."""
        try:
            chosen = ServerFilter.from_query(request.query)
        except ValueError as exc:
            raise Refused(view.json({"error": str(exc)}, status=400)) from None
        overview = await read(view, report_queries.overview)
        return overview, chosen.apply(overview["servers"]), chosen

    async def one_server(view: View, server_id: str) -> dict | None:
        """The server's detail, or None for a server the report does not know."""
        page = await read(view, lambda client: report_queries.server_page(client, server_id))
        return None if page is None else server_detail(page, settings.policy, catalog)

    @app.page("/report")
    class ReportJson(View):
        @answering
        async def get(self, request: Request) -> Response:
            return self.json(await read(self, queries.report))

    @app.page("/report.html")
    class ReportPage(View):
        @answering
        async def get(self, request: Request) -> Response:
            overview, shown, chosen = await servers_list(self, request)
            summary = summarize(overview["servers"], overview["newest_event"], settings.policy.stages)
            return self.html(pages.overview_page(summary, shown, overview["servers"], chosen, overview["control"]))

    @app.page("/report.csv")
    class ReportCsv(View):
        @answering
        async def get(self, request: Request) -> Response:
            _, shown, _ = await servers_list(self, request)
            return self.text(pages.servers_csv(shown, report_queries.SERVER_COLUMNS), content_type="text/csv",
                             headers={"Content-Disposition": "attachment; filename=servers.csv"})

    @app.page("/api/summary")
    class SummaryJson(View):
        @answering
        async def get(self, request: Request) -> Response:
            overview = await read(self, report_queries.overview)
            return self.json(summarize(overview["servers"], overview["newest_event"], settings.policy.stages))

    @app.page("/api/servers")
    class ServersJson(View):
        @answering
        async def get(self, request: Request) -> Response:
            _, shown, _ = await servers_list(self, request)
            return self.json(shown)

    # A server_id holds a slash when the server has an org (org/server).
    @app.page("/api/servers/{server_id:.+}")
    class ServerJson(View):
        @answering
        async def get(self, request: Request, server_id: str) -> Response:
            detail = await one_server(self, server_id)
            if detail is None:
                return self.json({"error": f"no server {server_id!r} in the report"}, status=404)
            return self.json(detail)

    @app.page("/servers/{server_id:.+}")
    class ServerPage(View):
        @answering
        async def get(self, request: Request, server_id: str) -> Response:
            detail = await one_server(self, server_id)
            if detail is None:
                return self.html(
                    pages.message_page("Unknown server", f"The report has no server {server_id!r}."), status=404)
            return self.html(pages.server_page(detail))

    @app.page("/sql")
    class Sql(View):
        @answering
        async def post(self, request: Request) -> Response:
            body = await json_body(self, request)
            query = body.get("query") if isinstance(body, dict) else None
            if not isinstance(query, str) or not query.strip():
                return self.json({"error": 'send {"query": "SELECT ..."}'}, status=400)
            try:
                return self.json(await with_client(lambda client: queries.run_sql(client, query)))
            except asyncio.CancelledError:
                raise
            except ClickHouseBusy as exc:
                return _busy(self, exc)
            except Exception as exc:  # ClickHouse reports syntax, permission, limit and type errors alike
                return self.json({"error": str(exc).strip()}, status=400)

    @app.page("/control")
    class Control(View):
        @answering
        async def post(self, request: Request) -> Response:
            payload = await json_body(self, request)
            try:
                # Sending waits for the broker's acknowledgement: in a thread, not on the event loop.
                return self.json(await asyncio.to_thread(control.submit, settings, payload))
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            except TopicAuthorizationFailedError:
                return self.json({"error": "the sink's Kafka principal may not write mail.control: grant it "
                                           "(patchgate kafka-acls --web-control) or use the patchgate commands"},
                                 status=403)
            except KafkaError as exc:
                return self.json({"error": f"the command was not sent: {exc}"}, status=503)


async def json_body(view: View, request: Request) -> Any:
    """The request's body read as JSON; Refused (400) when it is not JSON."""
    try:
        return await request.json()
    except ValueError as exc:  # also UTF-8 that does not decode
        raise Refused(view.json({"error": f"the body is not JSON: {exc}"}, status=400)) from None


def _busy(view: View, exc: ClickHouseBusy) -> Response:
    return view.json({"error": str(exc)}, status=503, headers={"Retry-After": "2"})
