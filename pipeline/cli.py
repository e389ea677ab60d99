"""patchgate: one console entry point with sub-commands."""
from __future__ import annotations

import argparse
import sys

from pipeline.catalog_files import CatalogError
from pipeline.commands import add_commands
from pipeline.contracts.schema_registry import SchemaRegistryError
from pipeline.domain.config import ConfigError
from pipeline.domain.control import ACTIONS as CONTROL_ACTIONS
from pipeline.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    args = command_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"patchgate: config: {exc}", file=sys.stderr)
        return 2
    try:
        _check_kafka(args.command, settings)
        _configure_wire(args.command, settings)
        return args.handler(args, settings)
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


def command_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command, each naming its handler (see pipeline.commands)."""
    parser = argparse.ArgumentParser(prog="patchgate", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (also PATCHGATE_CONFIG)")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


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
