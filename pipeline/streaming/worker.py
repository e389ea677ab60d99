"""Run the Faust app as a worker process."""
from __future__ import annotations

from faust import Worker

from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.streaming.app import build_app


def run_worker(settings: Settings) -> None:
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = build_app(settings, load_catalog(settings.catalog_file))
    # Faust's Worker installs the signal handlers: SIGTERM and SIGINT stop it cleanly, committing offsets.
    Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()
