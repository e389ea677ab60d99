import pytest

from pipeline.contracts.topics import Replication, created_topics, pipeline_topics, replication
from pipeline.settings import Settings


def test_every_pipeline_topic_with_decisions_and_commands_compacted_and_commands_in_one_partition():
    specs = pipeline_topics(Settings(topic_prefix="x."))
    assert [(s.name, s.compacted, s.single) for s in specs] == [
        ("x.mail.logs.raw", False, False), ("x.mail.logs.packed", False, False), ("x.mail.traces", False, False),
        ("x.mail.traces.dlq", False, False),
        ("x.mail.observations", False, False), ("x.mail.decisions", True, False),
        ("x.mail.enforcement", False, False), ("x.mail.control", True, True),
        ("x.mail.control.applied", False, False)]


def test_patchgate_topics_creates_the_changelogs_and_the_notices_ledger_too():
    settings = Settings(topic_prefix="x.", app_id="pg", partitions=6)
    created = {s.name: (s.compacted, s.partitions(settings)) for s in created_topics(settings)}
    assert {name: spec for name, spec in created.items() if not name.startswith("x.")} == {
        "pg-parser-state-changelog": (True, 6), "pg-open-messages-changelog": (True, 6),
        "pg-server-state-changelog": (True, 6), "pg-controls-in-force-changelog": (True, 6),
        "pg-control-state-changelog": (True, 1)}
    assert created["x.mail.notices"] == (True, 6)
    assert len(created) == len(pipeline_topics(settings)) + 6


@pytest.mark.parametrize(("brokers", "factor", "least", "expected"), [
    (1, None, None, Replication(1, 1)),
    (2, None, None, Replication(2, 1)),
    (3, None, None, Replication(3, 2)),
    (5, None, None, Replication(3, 2)),
    (5, 5, None, Replication(5, 2)),
    (3, 3, 3, Replication(3, 3)),
    (1, 3, None, Replication(3, 2)),  # asked for: creating the topics says what the cluster lacks
])
def test_replication_defaults_to_three_replicas_two_in_sync_and_fewer_on_a_small_cluster(brokers, factor, least,
                                                                                        expected):
    settings = Settings(replication_factor=factor, min_insync_replicas=least)
    assert replication(settings, brokers) == expected
