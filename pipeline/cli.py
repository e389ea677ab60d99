"""patchgate: one console entry point with sub-commands."""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patchgate", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (also PATCHGATE_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("topics", help="create the pipeline's Kafka topics")
    commands.add_parser("worker", help="run the Faust worker (all agents and the ClickHouse sink)")
    ship = commands.add_parser("ship", help="send log files line by line to mail.logs.raw")
    ship.add_argument("paths", nargs="+")
    wait = commands.add_parser("wait", help="wait until the worker has processed everything on its topics")
    wait.add_argument("--timeout", type=float, default=120.0)
    commands.add_parser("decisions", help="print the decisions on mail.decisions, one JSON line each")
    report = commands.add_parser("report", help="print the out-of-date servers report from ClickHouse")
    report.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    sql = commands.add_parser("sql", help="run a read-only SQL query on the report tables")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="one JSON object per row instead of a table")
    evaluate = commands.add_parser("evaluate", help="replay log files offline and print one JSON line per server")
    evaluate.add_argument("--at", help="ISO-8601 time to evaluate at (default: the newest event time)")
    evaluate.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file with the [policy] table")
    evaluate.add_argument("paths", nargs="+", help="files, folders (every file below) or - for standard input")

    args = parser.parse_args(argv)
    settings = load_settings(args.config)

    if args.command == "topics":
        from pipeline.streaming.admin import ensure_topics

        created = ensure_topics(settings)
        print(f"created {', '.join(created)}" if created else "all topics exist")
    elif args.command == "worker":
        from pipeline.streaming.worker import run_worker

        run_worker(settings)
    elif args.command == "ship":
        from pipeline.edges.shipper import ship as ship_files

        print(f"shipped {ship_files(settings, args.paths)} lines", file=sys.stderr)
    elif args.command == "wait":
        from pipeline.streaming.admin import wait_until_drained

        wait_until_drained(settings, args.timeout)
    elif args.command == "decisions":
        from pipeline.domain.report import evaluate_row
        from pipeline.edges.decisions import read_decisions

        for decision in read_decisions(settings):
            print(json.dumps(evaluate_row(decision)))
    elif args.command == "report":
        from pipeline.web import client, tables

        rows = client.report(settings)
        print(tables.json_lines(rows) if args.json else tables.text_table(tables.REPORT_SHOWN, rows))
    elif args.command == "sql":
        from pipeline.web import client, tables

        try:
            result = client.sql(settings, args.query)
        except client.QueryError as exc:
            print(f"patchgate sql: {exc}", file=sys.stderr)
            return 1
        rows = [dict(zip(result["columns"], row)) for row in result["rows"]]
        print(tables.json_lines(rows) if args.json else tables.text_table(result["columns"], rows))
    elif args.command == "evaluate":
        from pipeline.evaluate import evaluate as run_evaluate

        return run_evaluate(settings, args.paths, args.at)
    return 0
