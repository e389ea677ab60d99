"""Run a role's Faust apps in one worker process."""
from __future__ import annotations

import sys

from faust import Worker

from pipeline.catalog_files import load_catalog
from pipeline.kafka_admin import missing_topics
from pipeline.kafka_clients import KafkaUnusable, check_connection
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import FolderInUse, own_embedded_folder
from pipeline.streaming.app import Role, build_apps
from pipeline.streaming.repack import RepackerChild

# A worker or a sink may be started beside the brokers: it waits this long for them to answer.
KAFKA_PATIENCE_S = 60.0


def run_worker(settings: Settings, role: Role, repacker_argv: list[str]) -> int:
    """Runs until stopped, with the repacker (started by `repacker_argv`) as a child when the role
    processes lines; returns the exit status."""
    if role is not Role.WORKER:
        try:
            # Held until the process ends: a second sink on the same folder fails here, not in chdb.
            own_embedded_folder(settings.clickhouse_dsn)
        except FolderInUse as exc:
            print(f"patchgate: {exc}", file=sys.stderr)
            return 1
    try:
        check_connection(settings, patience_s=KAFKA_PATIENCE_S)
    except KafkaUnusable as exc:
        print(f"patchgate {role}: kafka: {exc}", file=sys.stderr)
        return 1
    missing = missing_topics(settings, role)
    if missing:
        print(f"patchgate {role}: the topics {', '.join(missing)} do not exist: `patchgate topics` creates them",
              file=sys.stderr)
        return 1
    for folder in ("faust", "faust-sink"):
        (settings.data_dir / folder).mkdir(parents=True, exist_ok=True)
    apps = build_apps(settings, load_catalog(settings.catalog_file), role)
    repacker = RepackerChild(repacker_argv) if role is not Role.SINK else None
    try:
        # Faust's Worker installs the signal handlers: SIGTERM and SIGINT stop it cleanly,
        # committing offsets; it ends with SystemExit and its status.
        Worker(*apps, loglevel="INFO", quiet=True).execute_from_commandline()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        if repacker is not None:
            repacker.stop()
    return 1 if repacker is not None and repacker.failed else status
