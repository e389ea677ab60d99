from pipeline.settings import Settings
from pipeline.streaming.topics import pipeline_topics


def test_every_pipeline_topic_and_only_decisions_compacted():
    specs = pipeline_topics(Settings(topic_prefix="x."))
    assert [(s.name, s.compacted) for s in specs] == [
        ("x.mail.logs.raw", False), ("x.mail.traces", False), ("x.mail.traces.dlq", False),
        ("x.mail.observations", False), ("x.mail.decisions", True), ("x.mail.enforcement", False)]
