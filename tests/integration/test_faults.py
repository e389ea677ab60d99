"""The fault campaign's scenarios (bench/faults.py) in short forms: the same code, smaller loads and
shorter faults. Each runs on the shared broker, except broker-down, which stops and starts a
broker of its own."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fault_scenarios
from fault_rig import OwnBroker

pytestmark = pytest.mark.integration


def test_worker_killed_twice_mid_stream_loses_and_repeats_nothing(tmp_path):
    result = fault_scenarios.worker_kill_9(tmp_path, lines=10_000, kills=2, seconds_per_kill=12.0)
    assert result.holds, result.describe()


@pytest.fixture
def own_broker(monkeypatch):
    """A broker of the test's own (not the shared one, nor bench/faults.py's), started for the test
    if it is not running and then stopped again; the pipeline's processes use it."""
    broker = OwnBroker(home=Path("/tmp/faults-it-kafka"), port=19094, controller_port=19095)
    started = not broker.running()
    if started:
        broker.start()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    yield broker
    if started:
        broker.stop()


def test_worker_shipper_and_mta_ride_out_a_broker_outage(tmp_path, own_broker):
    result = fault_scenarios.broker_down(tmp_path, own_broker, lines=3_000, outage_s=5.0)
    assert result.holds, result.describe()


def test_clickhouse_failing_holds_the_backlog_in_kafka_then_stores_every_row_once(tmp_path):
    result = fault_scenarios.clickhouse_failing(tmp_path, lines=6_000, outage_s=6.0, hang_s=4.0)
    assert result.holds, result.describe()


def test_poison_lines_go_to_the_dead_letter_topic_by_file_line_and_byte(tmp_path):
    result = fault_scenarios.poison(tmp_path, lines=30_000, per_file=5_000, random_files=2)
    assert result.holds, result.describe()


def test_a_bad_deploy_stops_the_worker_at_the_dead_letter_limit(tmp_path):
    result = fault_scenarios.bad_deploy(tmp_path, max_consecutive=50, timeout_s=60.0)
    assert result.holds, result.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")
def test_a_full_disk_stops_the_worker_cleanly_and_a_restart_resumes(tmp_path):
    result = fault_scenarios.disk_pressure(tmp_path, lines=6_000, load_s=20.0, stop_within_s=20.0)
    assert result.holds, result.describe()
