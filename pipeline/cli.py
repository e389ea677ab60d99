"""patchgate: one console entry point with sub-commands."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from pipeline.catalog_files import CatalogError
from pipeline.contracts.schema_registry import SchemaRegistryError
from pipeline.domain.config import ConfigError
from pipeline.domain.control import ACTIONS as CONTROL_ACTIONS
from pipeline.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patchgate", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (also PATCHGATE_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("topics", help="create the pipeline's Kafka topics")
    commands.add_parser("worker", help="run the processing agents (start any number, on any machines)")
    commands.add_parser("sink", help="run the ClickHouse writers and the web port (one with the embedded engine)")
    commands.add_parser("run", help="run a worker and the sink in one process (small sites, the demo)")
    commands.add_parser("repack", help="forward mail.logs.raw to the workers hundreds of records at a time "
                                       "(`worker` and `run` start one themselves)")
    ship = commands.add_parser("ship", help="send log files line by line to mail.logs.raw")
    ship.add_argument("paths", nargs="+", help="files or folders (every file below them)")
    ship.add_argument("--follow", action="store_true", help="keep tailing the files, like tail -F")
    ship.add_argument("--checkpoint",
                      help="where shipped positions are kept (default: <data dir>/ship-checkpoint.json)")
    ship.add_argument("--no-checkpoint", action="store_true", help="send everything again, keep no positions")
    wait = commands.add_parser("wait", help="wait until the worker has processed everything on its topics")
    wait.add_argument("--timeout", type=float, default=120.0)
    repartition = commands.add_parser(
        "repartition", help="grow every topic to more partitions, moving table keys (workers and sinks stopped)")
    repartition.add_argument("--to", type=int, required=True, help="the new partition count")
    repartition.add_argument("--leave-unplaced", action="store_true",
                             help="grow even if some table keys' records were placed by another partitioner")
    commands.add_parser("decisions", help="print the decisions on mail.decisions, one JSON line each")
    report = commands.add_parser("report", help="print the out-of-date servers report from ClickHouse")
    report.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    sql = commands.add_parser("sql", help="run a read-only SQL query on the report tables")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="one JSON object per row instead of a table")
    for name, port, what in (
            ("mta", 10040, "answer Postfix and Exim policy requests from the decisions on mail.decisions"),
            ("milter", 10041, "answer Sendmail and Postfix (smtpd_milters) in the milter protocol from the decisions")):
        server = commands.add_parser(name, help=what)
        server.add_argument("--host", default="127.0.0.1",
                            help="the address to listen on (default: loopback only; [mta] client_networks "
                                 "names the clients let in)")
        server.add_argument("--port", type=int, default=port)
        server.add_argument("--cache", help="decision cache file (default: <data dir>/decision-cache.json)")
    notify = commands.add_parser(
        "notify", help="mail each org's contacts when a server enters a new stage, and before throttling or blocking")
    notify.add_argument("--follow", action="store_true",
                        help="keep reading new decisions; look for due warnings every minute")
    notify.add_argument("--at", help="ISO-8601 time to take as now for the warnings (default: the clock)")
    evaluate = commands.add_parser("evaluate", help="replay log files offline and print one JSON line per server")
    evaluate.add_argument("--at", help="ISO-8601 time to evaluate at (default: the newest event time)")
    evaluate.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file with the [policy] table")
    evaluate.add_argument("paths", nargs="+", help="files, folders (every file below) or - for standard input")
    acls = commands.add_parser(
        "kafka-acls", help="print the Kafka ACLs of every role (kafka-acls.sh --add lines, or JSON)")
    acls.add_argument("--json", action="store_true", help="one JSON binding per line instead")
    acls.add_argument("--principal", action="append", default=[], metavar="ROLE=PRINCIPAL",
                      help="the principal a role runs as (default User:patchgate-ROLE); repeat per role")
    acls.add_argument("--command-config", help="the admin client properties file the printed lines pass on")
    acls.add_argument("--web-control", action="store_true",
                      help="let the sink write mail.control, for the web port's POST /control")
    ddl = commands.add_parser("clickhouse-ddl", help="print the report tables' DDL for a ClickHouse cluster")
    ddl.add_argument("--cluster", required=True, help="the cluster's name in the servers' <remote_servers>")
    _control_commands(commands)
    catalog = commands.add_parser("catalog", help="keep the Exchange build catalog current")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    update = catalog_commands.add_parser(
        "update", help="merge Microsoft's build-number page (saved as HTML, or its CSV form) into the catalog")
    update.add_argument("file", help="the saved page or CSV")
    update.add_argument("--output", help="where to write the catalog (default: the [catalog] path setting)")
    update.add_argument("--config", default=argparse.SUPPRESS, help="TOML settings file")

    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"patchgate: config: {exc}", file=sys.stderr)
        return 2
    try:
        _check_kafka(args.command, settings)
        _configure_wire(args.command, settings)
        return _run(args, settings)
    except CatalogError as exc:
        print(f"patchgate {args.command}: {exc}", file=sys.stderr)
        return 2
    except KafkaRefused as exc:
        print(f"patchgate {args.command}: kafka: {exc}", file=sys.stderr)
        return 1
    except SchemaRegistryError as exc:
        print(f"patchgate {args.command}: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in WORKER_EXTRA_MODULES:
            raise
        print(f"patchgate {args.command}: {missing} is not installed: this command needs the worker's "
              "dependencies (pip install 'patchgate[worker]')", file=sys.stderr)
        return 2
    except Exception as exc:
        # kafka-python is imported only by the commands that talk to Kafka (it takes a third of a
        # second): an error of its own can only come once it is loaded.
        errors = sys.modules.get("kafka.errors")
        if errors is None or not isinstance(exc, errors.KafkaError):
            raise
        print(f"patchgate {args.command}: kafka: {exc}", file=sys.stderr)
        return 1


# The modules of pyproject.toml's `worker` extra. An MTA or shipper host installs patchgate without
# it, and its commands import none of them; a command that does names the extra to install.
WORKER_EXTRA_MODULES = frozenset(
    ("faust", "mode", "intervaltree", "rocksdict", "clickhouse_connect", "chdb", "pyarrow", "cramjam",
     "prometheus_client", "jinja2"))


# The commands that talk to Kafka (but the workers and sinks, which check for themselves), and
# how long each waits for brokers that do not answer: `mta` and `milter` serve their cached
# decisions and the shipper keeps the lines until the brokers come (None: go on without them).
KAFKA_PATIENCE_S: dict[str, float | None] = {
    "mta": None, "milter": None, "ship": None, "repack": 60.0,
    **dict.fromkeys(("topics", "wait", "repartition", "decisions", "notify", *CONTROL_ACTIONS), 0.0),
}


def _check_kafka(command: str, settings: Settings) -> None:
    """Connect as the command's clients will, if it talks to Kafka. A connection that cannot work
    (credentials, certificates, protocol) stops every command with one line; brokers that do not
    answer stop those that cannot go on without them."""
    if command not in KAFKA_PATIENCE_S:
        return
    from pipeline.kafka_clients import KafkaUnusable, check_connection

    patience = KAFKA_PATIENCE_S[command]
    try:
        check_connection(settings, patience_s=patience or 0.0)
    except KafkaUnusable as exc:
        if exc.lasting or patience is not None:
            raise KafkaRefused(str(exc)) from None
        print(f"patchgate {command}: kafka: {exc}; going on without it", file=sys.stderr)


# The commands that write Avro records to Kafka, and so frame them as `[kafka] wire_format` says.
WRITES_AVRO = ("worker", "sink", "run", "repack", "mta", "milter", *CONTROL_ACTIONS)


def _configure_wire(command: str, settings: Settings) -> None:
    """Register the schemas and frame records as the wire settings say, for a command that talks
    to Kafka (readers included: they look up the registry ids they meet)."""
    if command in KAFKA_PATIENCE_S or command in WRITES_AVRO:
        from pipeline.contracts.wire import configure

        configure(settings, writes=command in WRITES_AVRO)


class KafkaRefused(Exception):
    """The brokers cannot be used as the settings say (one line)."""


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "topics":
        from pipeline.kafka_admin import ensure_topics

        made = ensure_topics(settings)
        print(f"created {', '.join(made.created)}" if made.created else "all topics exist")
        if made.under_replicated:
            print("\n".join(made.under_replicated), file=sys.stderr)
            print(f"patchgate topics: {len(made.under_replicated)} topics have fewer replicas than asked "
                  "(PATCHGATE_REPLICATION_FACTOR): add replicas with kafka-reassign-partitions", file=sys.stderr)
            return 1
    elif args.command in ("worker", "sink", "run"):
        from pipeline.streaming.app import Role
        from pipeline.streaming.worker import run_worker

        config = ["--config", args.config] if args.config else []
        return run_worker(settings, Role(args.command), [sys.executable, "-m", "pipeline", *config, "repack"])
    elif args.command == "repack":
        from pipeline.streaming.repack import run_repacker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        run_repacker(settings)
    elif args.command == "ship":
        from pipeline.edges.shipper import progress_stream, ship as ship_files

        checkpoint = None if args.no_checkpoint else Path(args.checkpoint or settings.data_dir / "ship-checkpoint.json")
        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.append(True))
        sent = ship_files(settings, args.paths, follow=args.follow, checkpoint=checkpoint,
                          progress=progress_stream(), stop=lambda: bool(stopping))
        print(f"shipped {sent} lines", file=sys.stderr)
    elif args.command == "wait":
        from pipeline.kafka_admin import wait_until_drained

        wait_until_drained(settings, args.timeout)
    elif args.command == "repartition":
        from pipeline.streaming.repartition import Refused, repartition as grow

        try:
            done = grow(settings, args.to, args.leave_unplaced)
        except Refused as exc:
            print(f"patchgate repartition: {exc}", file=sys.stderr)
            return 2
        print("\n".join(done))
    elif args.command == "decisions":
        from pipeline.domain.report import evaluate_row
        from pipeline.edges.decisions import read_decisions

        for decision in read_decisions(settings):
            print(json.dumps(evaluate_row(decision)))
    elif args.command == "report":
        from pipeline.web import client, tables

        try:
            rows = client.report(settings)
        except client.QueryError as exc:
            print(f"patchgate report: {exc}", file=sys.stderr)
            return 1
        print(tables.json_lines(rows) if args.json else tables.text_table(tables.REPORT_SHOWN, rows))
    elif args.command == "sql":
        from pipeline.web import client, tables

        try:
            result = client.sql(settings, args.query)
        except client.QueryError as exc:
            print(f"patchgate sql: {exc}", file=sys.stderr)
            return 1
        rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        print(tables.json_lines(rows) if args.json else tables.text_table(result["columns"], rows))
    elif args.command in ("mta", "milter"):
        from pipeline.edges.milter import run_milter
        from pipeline.edges.mta import run_mta

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        run = run_mta if args.command == "mta" else run_milter
        run(settings, args.host, args.port, Path(args.cache or settings.data_dir / "decision-cache.json"))
    elif args.command == "notify":
        return _notify(args, settings)
    elif args.command == "evaluate":
        from pipeline.evaluate import evaluate as run_evaluate

        return run_evaluate(settings, args.paths, args.at)
    elif args.command == "clickhouse-ddl":
        from pipeline.sinks.cluster_ddl import cluster_ddl

        try:
            print(cluster_ddl(args.cluster), end="")
        except ValueError as exc:
            print(f"patchgate clickhouse-ddl: {exc}", file=sys.stderr)
            return 2
    elif args.command == "kafka-acls":
        return _kafka_acls(args, settings)
    elif args.command in CONTROL_ACTIONS:
        return _control(args, settings)
    elif args.command == "catalog":
        from pipeline.catalog_update import update_catalog

        return update_catalog(settings, Path(args.file), Path(args.output) if args.output else None)
    return 0


def _notify(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from pipeline.edges.notify import DecisionsMissing, NoticesFailed, run as notify

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        at = datetime.fromisoformat(args.at) if args.at else None
    except ValueError:
        print(f"patchgate notify: --at {args.at!r} is not an ISO-8601 time", file=sys.stderr)
        return 2
    stopping = []
    if args.follow:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.append(True))
    try:
        sent = notify(settings, at=at, follow=args.follow, stop=lambda: bool(stopping))
    except ConfigError as exc:  # the relay's password or CA file, which only this command reads
        print(f"patchgate notify: config: {exc}", file=sys.stderr)
        return 2
    except (NoticesFailed, DecisionsMissing) as exc:
        print(f"patchgate notify: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} notices", file=sys.stderr)
    return 0


def _kafka_acls(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka_acls import command_lines, grants, parse_principals

    try:
        principals = parse_principals(args.principal)
    except ValueError as exc:
        print(f"patchgate kafka-acls: {exc}", file=sys.stderr)
        return 2
    made = grants(settings, principals, web_control=args.web_control)
    if args.json:
        print("\n".join(json.dumps(binding) for grant in made for binding in grant.bindings()))
    else:
        print("\n".join(command_lines(made, settings.bootstrap_servers, args.command_config)))
    return 0


def _control_commands(commands) -> None:
    pause = commands.add_parser("pause", help="pause an org's throttling and blocking (no restart needed)")
    pause.add_argument("target", metavar="ORG")
    pause.add_argument("--days", type=int, required=True, help="how many days (the yearly budget caps them)")
    pause.add_argument("--reason", required=True)
    pause.add_argument("--from", dest="start", help="the first paused day, YYYY-MM-DD (default: today, UTC)")
    resume = commands.add_parser("resume", help="end an org's pause: enforced again from today")
    resume.add_argument("target", metavar="ORG")
    exempt = commands.add_parser("exempt", help="exempt a server (name or pattern) from throttling and blocking")
    exempt.add_argument("target", metavar="SERVER")
    exempt.add_argument("--until", required=True, help="the first day it is enforced again, YYYY-MM-DD")
    exempt.add_argument("--reason", required=True)
    exempt.add_argument("--all-servers", action="store_true",
                        help="allow a pattern that matches every server (it switches enforcement off)")
    unexempt = commands.add_parser("unexempt", help="lift an exemption a command granted")
    unexempt.add_argument("target", metavar="SERVER")
    report_only = commands.add_parser(
        "report-only", help="report-only rollout for an org or the whole site (*): the MTAs accept its mail and "
                            "record what they would have deferred or rejected")
    report_only.add_argument("target", metavar="ORG|*")
    report_only.add_argument("--reason", required=True)
    enforce = commands.add_parser("enforce", help="end the report-only mode a command gave an org or the site (*)")
    enforce.add_argument("target", metavar="ORG|*")
    for command in (pause, resume, exempt, unexempt, report_only, enforce):
        command.add_argument("--timeout", type=float, default=30.0, help="how long to wait for the outcome")


def _control(args: argparse.Namespace, settings: Settings) -> int:
    """Send the command and print its outcome: exit 0 applied, 1 refused, 3 no worker answered."""
    from datetime import UTC, datetime

    from pipeline.edges.control import command_from_request, control_topics, operator, send_and_wait
    from pipeline.kafka_admin import ensure_topics

    request = {"action": args.command, "target": args.target}
    request.update({name: getattr(args, name) for name in ("days", "reason", "start", "until", "all_servers")
                    if getattr(args, name, None) not in (None, False)})
    try:
        command = command_from_request(request, datetime.now(UTC), operator())
    except ValueError as exc:
        print(f"patchgate {args.command}: {exc}", file=sys.stderr)
        return 2
    ensure_topics(settings, control_topics(settings))
    outcome = send_and_wait(settings, command, args.timeout)
    if outcome is None:
        print(f"sent {command.command_id}; no worker applied it within {args.timeout:g} s: the first worker "
              "to run will", file=sys.stderr)
        return 3
    print(f"{'applied' if outcome['applied'] else 'refused'}: {outcome['detail']}")
    return 0 if outcome["applied"] else 1

