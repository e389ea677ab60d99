"""`patchgate topics` on the single broker: replication asked for and what the cluster can give."""
from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import ROOT


def topics(env: dict, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "topics"], env={**env, **extra}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_topics_with_fewer_replicas_than_asked_are_named_not_accepted(pipeline_env):
    settings, env = pipeline_env  # created with one replica: the broker is alone
    assert topics(env).stdout == "all topics exist\n"
    asked = topics(env, PATCHGATE_REPLICATION_FACTOR="2")
    assert asked.returncode == 1
    named = asked.stderr.splitlines()
    assert f"topic {settings.topic('mail.logs.raw')} has 1 replicas, 2 asked" in named
    assert f"topic {settings.app_id}-server-state-changelog has 1 replicas, 2 asked" in named
    assert named[-1] == ("patchgate topics: 15 topics have fewer replicas than asked (PATCHGATE_REPLICATION_FACTOR): "
                         "add replicas with kafka-reassign-partitions")


def test_more_replicas_than_brokers_is_one_line(pipeline_env):
    _, env = pipeline_env
    refused = topics(env, PATCHGATE_TOPIC_PREFIX=f"{env['PATCHGATE_TOPIC_PREFIX']}three.",
                     PATCHGATE_REPLICATION_FACTOR="3")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("patchgate topics: kafka: ")
    assert "The target replication factor of 3 cannot be reached because only 1 broker(s) are registered" in (
        refused.stderr), refused.stderr
