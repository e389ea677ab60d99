"""The wiring of the Faust apps of each role (the agents run for real in tests/integration)."""
from typing import cast

import pytest
from faust.web.drivers.aiohttp import Web

from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.streaming.app import Role, build_apps

SETTINGS = Settings(topic_prefix="t.", partitions=6, app_id="pg-unit")


def sources(app) -> dict[str, str]:
    return {name.rsplit(".", 1)[-1]: ",".join(agent.channel.topics) for name, agent in app.agents.items()}


def test_the_worker_processes_in_the_app_group_with_co_partitioned_tables():
    [worker] = build_apps(SETTINGS, load_catalog(), Role.WORKER)
    assert worker.conf.id == "pg-unit"
    assert sources(worker) == {"ingest": "t.mail.logs.packed", "observe": "t.mail.traces",
                               "enforce": "t.mail.observations,t.mail.control.applied",
                               "fold_commands": "t.mail.control"}
    assert set(worker.tables) == {"parser-state", "open-messages", "server-state", "controls-in-force",
                                  "control-state"}
    for table in worker.tables.values():
        # The control agent's table goes with mail.control, the topic read in one order.
        assert table.partitions == (1 if table.name == "control-state" else 6)
        assert table.changelog_topic.get_topic_name() == f"pg-unit-{table.name}-changelog"


def test_the_sink_stores_in_a_group_of_its_own_without_tables():
    [sink] = build_apps(SETTINGS, load_catalog(), Role.SINK)
    assert sink.conf.id == "pg-unit-sink"
    assert sources(sink) == {"store_decisions": "t.mail.decisions", "store_observations": "t.mail.observations",
                             "store_control_log": "t.mail.control.applied", "store_enforcement": "t.mail.enforcement"}
    assert not sink.tables
    assert sink.conf.web_enabled


@pytest.mark.parametrize("role", [Role.RUN])
def test_one_process_runs_both_apps_with_one_web_port(role):
    worker, sink = build_apps(SETTINGS, load_catalog(), role)
    assert (worker.conf.id, sink.conf.id) == ("pg-unit", "pg-unit-sink")
    assert not worker.conf.web_enabled and sink.conf.web_enabled
    assert worker.conf.datadir != sink.conf.datadir


@pytest.mark.parametrize("role", [Role.WORKER, Role.SINK])
def test_the_web_port_serves_no_table_rows_of_faust_s_own(role):
    [app] = build_apps(SETTINGS, load_catalog(), role)
    app.web.init_server()
    paths = {route.resource.canonical for route in cast(Web, app.web).web_app.router.routes()}
    assert {"/health", "/healthz", "/metrics", "/login"} <= paths
    assert not [path for path in paths if path.startswith(("/table", "/router"))]
