"""The wiring of the Faust app (the agents run for real in tests/integration)."""
from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.streaming.app import build_app


def test_agents_topics_and_co_partitioned_tables():
    app = build_app(Settings(topic_prefix="t.", partitions=6, app_id="pg-unit"), load_catalog())
    sources = {name.rsplit(".", 1)[-1]: agent.channel.get_topic_name() for name, agent in app.agents.items()}
    assert sources == {
        "ingest": "t.mail.logs.raw",
        "observe": "t.mail.traces",
        "enforce": "t.mail.observations",
        "store_decisions": "t.mail.decisions",
        "store_observations": "t.mail.observations",
        "store_enforcement": "t.mail.enforcement",
    }
    tables = {name: table for name, table in app.tables.items()}
    assert set(tables) == {"parser-state", "open-messages", "server-state"}
    for table in tables.values():
        assert table.partitions == 6
        assert table.changelog_topic.get_topic_name() == f"pg-unit-{table.name}-changelog"

