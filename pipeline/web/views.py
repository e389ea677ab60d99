"""Views on a process's Faust web server.

Every role answers (register_ops):
    GET  /health          {"status": "ok" | "degraded", "clickhouse_writes": {...}, "paused_partitions": [...]};
                          answered without ClickHouse, also while its writes fail
    GET  /healthz         the same, with status 200 when ok and 503 otherwise (for probes and load balancers)
    GET  /metrics         the app's Prometheus metrics (pipeline.streaming.metrics), text format 0.0.4

The sink role answers the reads (register_reports); in embedded mode its process owns the
ClickHouse folder, so reads go through it:
    GET  /report          the servers report as JSON
    GET  /report.html     the same as a page for server owners
    POST /sql             {"query": "SELECT ..."} -> {"columns": [...], "rows": [...]} (readonly)
"""
from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from pipeline.sinks import queries
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.storage import ClickHouseBusy
from pipeline.web.tables import cell

ClientCall = Callable[[Callable], Awaitable]


def register_ops(app: faust.App, health: Callable[[], dict], metrics: Metrics) -> None:
    """`health()` is what /health answers; /metrics reads `metrics` as it is scraped."""

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


def register_reports(app: faust.App, with_client: ClientCall) -> None:
    """`with_client(fn)` runs fn(client) on the reader, whatever the sink's writes are doing. A read
    behind an earlier one that hangs fails fast (ClickHouseBusy): 503 with Retry-After."""

    @app.page("/report")
    class ReportJson(View):
        async def get(self, request: Request) -> Response:
            try:
                return self.json(await with_client(queries.report))
            except ClickHouseBusy as exc:
                return _busy(self, exc)

    @app.page("/report.html")
    class ReportPage(View):
        async def get(self, request: Request) -> Response:
            try:
                rows = await with_client(queries.report)
            except ClickHouseBusy as exc:
                return _busy(self, exc)
            return self.html(render_report(rows))

    @app.page("/sql")
    class Sql(View):
        async def post(self, request: Request) -> Response:
            body = await request.json()
            query = body.get("query") if isinstance(body, dict) else None
            if not isinstance(query, str) or not query.strip():
                return self.json({"error": 'send {"query": "SELECT ..."}'}, status=400)
            try:
                return self.json(await with_client(lambda client: queries.run_sql(client, query)))
            except asyncio.CancelledError:
                raise
            except ClickHouseBusy as exc:
                return _busy(self, exc)
            except Exception as exc:  # ClickHouse reports syntax, permission and type errors alike
                return self.json({"error": str(exc).strip()}, status=400)


def _busy(view: View, exc: ClickHouseBusy) -> Response:
    return view.json({"error": str(exc)}, status=503, headers={"Retry-After": "2"})


def render_report(rows: list[dict]) -> str:
    shown = queries.REPORT_COLUMNS
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(row[c]))}</td>" for c in shown) + "</tr>" for row in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Out-of-date mail servers</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style>"
        f"</head><body><h1>Out-of-date mail servers</h1><table><tr>{head}</tr>{body}</table></body></html>"
    )
