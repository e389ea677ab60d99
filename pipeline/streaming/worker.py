"""Run a role's Faust apps in one worker process."""
from __future__ import annotations

import sys

from faust import Worker

from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import FolderInUse, own_embedded_folder
from pipeline.streaming.app import Role, build_apps
from pipeline.streaming.topics import replication


def run_worker(settings: Settings, role: Role, brokers: int) -> int:
    """Runs until stopped; returns only an exit status for a sink that may not start (the Faust
    worker ends the process itself, with its status). `brokers`: how many the cluster has, for the
    replication of a changelog the worker would have to create."""
    if role is not Role.WORKER:
        try:
            # Held until the process ends: a second sink on the same folder fails here, not in chdb.
            own_embedded_folder(settings.clickhouse_dsn)
        except FolderInUse as exc:
            print(f"patchgate: {exc}", file=sys.stderr)
            return 1
    for folder in ("faust", "faust-sink"):
        (settings.data_dir / folder).mkdir(parents=True, exist_ok=True)
    apps = build_apps(settings, load_catalog(settings.catalog_file), role, replication(settings, brokers))
    # Faust's Worker installs the signal handlers: SIGTERM and SIGINT stop it cleanly, committing
    # offsets.
    Worker(*apps, loglevel="INFO", quiet=True).execute_from_commandline()
