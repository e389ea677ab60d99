"""The commands of an MTA or shipper host, which has the base install only: shipping log files,
answering the MTAs from the decisions, mailing the contacts, printing the decisions."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from pipeline.domain.config import ConfigError
from pipeline.settings import Settings


def add_parsers(commands: argparse._SubParsersAction) -> None:
    ship = commands.add_parser("ship", help="send log files line by line to mail.logs.raw")
    ship.add_argument("paths", nargs="+", help="files or folders (every file below them)")
    ship.add_argument("--follow", action="store_true", help="keep tailing the files, like tail -F")
    ship.add_argument("--checkpoint",
                      help="where shipped positions are kept (default: <data dir>/ship-checkpoint.json)")
    ship.add_argument("--no-checkpoint", action="store_true", help="send everything again, keep no positions")
    ship.set_defaults(handler=_ship)
    commands.add_parser("decisions", help="print the decisions on mail.decisions, one JSON line each").set_defaults(
        handler=_decisions)
    for name, port, what in (
            ("mta", 10040, "answer Postfix and Exim policy requests from the decisions on mail.decisions"),
            ("milter", 10041, "answer Sendmail and Postfix (smtpd_milters) in the milter protocol from the decisions")):
        server = commands.add_parser(name, help=what)
        server.add_argument("--host", default="127.0.0.1",
                            help="the address to listen on (default: loopback only; [mta] client_networks "
                                 "names the clients let in)")
        server.add_argument("--port", type=int, default=port)
        server.add_argument("--cache", help="decision cache file (default: <data dir>/decision-cache.json)")
        server.set_defaults(handler=_policy_server)
    notify = commands.add_parser(
        "notify", help="mail each org's contacts when a server enters a new stage, and before throttling or blocking")
    notify.add_argument("--follow", action="store_true",
                        help="keep reading new decisions; look for due warnings every minute")
    notify.add_argument("--at", help="ISO-8601 time to take as now for the warnings (default: the clock)")
    notify.set_defaults(handler=_notify)


def _ship(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.edges.shipper import progress_stream, ship as ship_files

    checkpoint = None if args.no_checkpoint else Path(args.checkpoint or settings.data_dir / "ship-checkpoint.json")
    stopping = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(True))
    sent = ship_files(settings, args.paths, follow=args.follow, checkpoint=checkpoint,
                      progress=progress_stream(), stop=lambda: bool(stopping))
    print(f"shipped {sent} lines", file=sys.stderr)
    return 0


def _decisions(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.domain.report import evaluate_row
    from pipeline.edges.decisions import read_decisions

    for decision in read_decisions(settings):
        print(json.dumps(evaluate_row(decision)))
    return 0


def _policy_server(args: argparse.Namespace, settings: Settings) -> int:
    """`mta` and `milter`: the two protocols answer from the same decisions."""
    from pipeline.edges.milter import run_milter
    from pipeline.edges.mta import run_mta

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run = run_mta if args.command == "mta" else run_milter
    run(settings, args.host, args.port, Path(args.cache or settings.data_dir / "decision-cache.json"))
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
