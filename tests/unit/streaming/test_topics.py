from pipeline.settings import Settings
from pipeline.streaming.topics import pipeline_topics


def test_every_pipeline_topic_with_decisions_and_commands_compacted_and_commands_in_one_partition():
    specs = pipeline_topics(Settings(topic_prefix="x."))
    assert [(s.name, s.compacted, s.single) for s in specs] == [
        ("x.mail.logs.raw", False, False), ("x.mail.traces", False, False), ("x.mail.traces.dlq", False, False),
        ("x.mail.observations", False, False), ("x.mail.decisions", True, False),
        ("x.mail.enforcement", False, False), ("x.mail.control", True, True),
        ("x.mail.control.applied", False, False)]
