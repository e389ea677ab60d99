"""The commands that read the report tables or work offline: the report, read-only SQL, the replay
of log files (`evaluate`), a cluster's DDL, and the upkeep of the build catalog they all read."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.settings import Settings


def add_parsers(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="print the out-of-date servers report from ClickHouse")
    report.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    report.set_defaults(handler=_report)
    sql = commands.add_parser("sql", help="run a read-only SQL query on the report tables")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="one JSON object per row instead of a table")
    sql.set_defaults(handler=_sql)
    evaluate = commands.add_parser("evaluate", help="replay log files offline and print one JSON line per server")
    evaluate.add_argument("--at", help="ISO-8601 time to evaluate at (default: the newest event time)")
    evaluate.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file with the [policy] table")
    evaluate.add_argument("paths", nargs="+", help="files, folders (every file below) or - for standard input")
    evaluate.set_defaults(handler=_evaluate)
    ddl = commands.add_parser("clickhouse-ddl", help="print the report tables' DDL for a ClickHouse cluster")
    ddl.add_argument("--cluster", required=True, help="the cluster's name in the servers' <remote_servers>")
    ddl.set_defaults(handler=_clickhouse_ddl)
    catalog = commands.add_parser("catalog", help="keep the Exchange build catalog current")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    update = catalog_commands.add_parser(
        "update", help="merge Microsoft's build-number page (saved as HTML, or its CSV form) into the catalog")
    update.add_argument("file", help="the saved page or CSV")
    update.add_argument("--output", help="where to write the catalog (default: the [catalog] path setting)")
    update.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file")
    update.set_defaults(handler=_catalog_update)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.web import client, tables

    try:
        rows = client.report(settings)
    except client.QueryError as exc:
        print(f"patchgate report: {exc}", file=sys.stderr)
        return 1
    print(tables.json_lines(rows) if args.json else tables.text_table(tables.REPORT_SHOWN, rows))
    return 0


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.web import client, tables

    try:
        result = client.sql(settings, args.query)
    except client.QueryError as exc:
        print(f"patchgate sql: {exc}", file=sys.stderr)
        return 1
    rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
    print(tables.json_lines(rows) if args.json else tables.text_table(result["columns"], rows))
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.evaluate import evaluate

    return evaluate(settings, args.paths, args.at)


def _clickhouse_ddl(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.sinks.cluster_ddl import cluster_ddl

    try:
        print(cluster_ddl(args.cluster), end="")
    except ValueError as exc:
        print(f"patchgate clickhouse-ddl: {exc}", file=sys.stderr)
        return 2
    return 0


def _catalog_update(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.catalog_update import update_catalog

    return update_catalog(settings, Path(args.file), Path(args.output) if args.output else None)
