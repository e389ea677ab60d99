"""The operator's commands on mail.control: pause and resume an org, exempt a server and lift the
exemption, report-only rollout and its end. One handler sends any of them and waits for the outcome."""
from __future__ import annotations

import argparse
import sys

from pipeline.settings import Settings


def add_parsers(commands: argparse._SubParsersAction) -> None:
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
        command.set_defaults(handler=_control)


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
