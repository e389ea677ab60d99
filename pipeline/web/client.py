"""`patchgate report` and `patchgate sql`: query ClickHouse directly, or through the running sink.

With an http(s) CLICKHOUSE_URL the server is queried directly. In embedded mode the running sink
(`patchgate sink` or `patchgate run`) owns the ClickHouse folder, so the query goes to its web
port; with no sink running the folder is opened here, and owned while it is.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from pipeline.settings import Settings
from pipeline.sinks import queries
from pipeline.sinks.clickhouse import FolderInUse, connect, own_embedded_folder


class QueryError(RuntimeError):
    """ClickHouse refused the query (syntax, a write in read-only mode, ...)."""


def report(settings: Settings) -> list[dict]:
    through_worker = _ask_worker(settings, "GET", "/report")
    if through_worker is not None:
        return through_worker
    return _direct(settings, queries.report)


def sql(settings: Settings, query: str) -> dict:
    through_worker = _ask_worker(settings, "POST", "/sql", {"query": query})
    if through_worker is not None:
        return through_worker
    try:
        return _direct(settings, lambda client: queries.run_sql(client, query))
    except Exception as exc:
        raise QueryError(str(exc).strip()) from exc


def _direct(settings: Settings, fn):
    try:
        own_embedded_folder(settings.clickhouse_dsn)
    except FolderInUse as exc:
        raise QueryError(f"{exc}; and it did not answer on {settings.web_host}:{settings.web_port}") from None
    client = connect(settings.clickhouse_dsn)
    try:
        return fn(client)
    finally:
        client.close()


def _ask_worker(settings: Settings, method: str, path: str, body: dict | None = None):
    """The sink's answer, or None when there is no sink to ask (or no need to)."""
    if not settings.clickhouse_dsn.startswith("chdb://"):
        return None
    # The operator's token where the settings hold it, else the viewers' (reading needs either).
    token = settings.web_token or settings.web_view_token
    request = urllib.request.Request(
        f"http://{settings.web_host}:{settings.web_port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise QueryError(json.loads(error.read()).get("error", str(error))) from error
    except (urllib.error.URLError, ConnectionError):
        return None
