"""The sub-commands of `patchgate`, each parser beside the handler it runs.

A module adds its commands' parsers, and each parser names its handler (`set_defaults(handler=...)`),
which the entry point calls as `handler(args, settings)` for the exit code. The modules follow what
their commands need installed: `edges` runs on an MTA or shipper host, which has no worker extra;
`stream` and `reports` need it for the most part; `control` needs only the Kafka clients.

A handler imports what it uses when it runs, never at the top of its module: the entry point loads
every module here to build its parsers, and a host without the worker extra has no Faust, Arrow or
ClickHouse client to load (nor should a command pay for kafka-python when it does not talk to Kafka).
"""
from __future__ import annotations

import argparse

from pipeline.commands import control, edges, reports, stream


def add_commands(commands: argparse._SubParsersAction) -> None:
    for module in (stream, edges, reports, control):
        module.add_parsers(commands)
