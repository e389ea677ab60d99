"""The commands that run the stream and set up its Kafka side: topics, the worker and the sink, the
repacker, waiting for the workers, growing the partitions, the ACLs of each role."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline.settings import Settings


def add_parsers(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("topics", help="create the pipeline's Kafka topics").set_defaults(handler=_topics)
    for role, what in (
            ("worker", "run the processing agents (start any number, on any machines)"),
            ("sink", "run the ClickHouse writers and the web port (one with the embedded engine)"),
            ("run", "run a worker and the sink in one process (small sites, the demo)")):
        commands.add_parser(role, help=what).set_defaults(handler=_worker)
    commands.add_parser("repack", help="forward mail.logs.raw to the workers hundreds of records at a time "
                                       "(`worker` and `run` start one themselves)").set_defaults(handler=_repack)
    wait = commands.add_parser("wait", help="wait until the worker has processed everything on its topics")
    wait.add_argument("--timeout", type=float, default=120.0)
    wait.set_defaults(handler=_wait)
    repartition = commands.add_parser(
        "repartition", help="grow every topic to more partitions, moving table keys (workers and sinks stopped)")
    repartition.add_argument("--to", type=int, required=True, help="the new partition count")
    repartition.add_argument("--leave-unplaced", action="store_true",
                             help="grow even if some table keys' records were placed by another partitioner")
    repartition.set_defaults(handler=_repartition)
    acls = commands.add_parser(
        "kafka-acls", help="print the Kafka ACLs of every role (kafka-acls.sh --add lines, or JSON)")
    acls.add_argument("--json", action="store_true", help="one JSON binding per line instead")
    acls.add_argument("--principal", action="append", default=[], metavar="ROLE=PRINCIPAL",
                      help="the principal a role runs as (default User:patchgate-ROLE); repeat per role")
    acls.add_argument("--command-config", help="the admin client properties file the printed lines pass on")
    acls.add_argument("--web-control", action="store_true",
                      help="let the sink write mail.control, for the web port's POST /control")
    acls.set_defaults(handler=_kafka_acls)


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka_admin import ensure_topics

    made = ensure_topics(settings)
    print(f"created {', '.join(made.created)}" if made.created else "all topics exist")
    if made.under_replicated:
        print("\n".join(made.under_replicated), file=sys.stderr)
        print(f"patchgate topics: {len(made.under_replicated)} topics have fewer replicas than asked "
              "(PATCHGATE_REPLICATION_FACTOR): add replicas with kafka-reassign-partitions", file=sys.stderr)
        return 1
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """`worker`, `sink` and `run`: the role is the command's name."""
    from pipeline.streaming.app import Role
    from pipeline.streaming.worker import run_worker

    config = ["--config", args.config] if args.config else []
    return run_worker(settings, Role(args.command), [sys.executable, "-m", "pipeline", *config, "repack"])


def _repack(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.streaming.repack import run_repacker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_repacker(settings)
    return 0


def _wait(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.kafka_admin import wait_until_drained

    wait_until_drained(settings, args.timeout)
    return 0


def _repartition(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.streaming.repartition import Refused, repartition as grow

    try:
        done = grow(settings, args.to, args.leave_unplaced)
    except Refused as exc:
        print(f"patchgate repartition: {exc}", file=sys.stderr)
        return 2
    print("\n".join(done))
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
