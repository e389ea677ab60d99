"""Several workers and one sink (issue 11): three `patchgate worker` processes, each with its own
tables and web port, and one `patchgate sink`, on 12 partitions."""
from __future__ import annotations

import io
import json
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pipeline.domain.report import evaluate_row
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship
from pipeline.evaluate import evaluate
from pipeline.kafka_admin import wait_until_drained
from pipeline.settings import load_settings
from pipeline.web import client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fault_scenarios
from fault_rig import Pipeline

from tests.integration.test_pipeline import CONFIG, SAMPLES, assert_expected_without_gaps


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples in a /metrics answer."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name)


def test_three_workers_and_a_sink_decide_what_one_process_decides(tmp_path):
    pipeline = Pipeline(tmp_path, config=CONFIG, partitions=12)
    try:
        sink = pipeline.sink()
        pipeline.wait_for_web(sink)
        workers = {number: pipeline.scaled_worker(number) for number in (1, 2, 3)}
        fault_scenarios._until_workers_hold(pipeline, workers)
        for number in workers:
            assert pipeline.worker_web(number, "/healthz").startswith('{"status":"ok"')
        lines_before = sum(metric(pipeline.worker_web(n, "/metrics"), "patchgate_lines_total") for n in workers)

        shipped = ship(pipeline.settings, [str(SAMPLES)])
        everyone = [sink, *workers.values()]
        wait_until_drained(pipeline.settings, 240, worker_alive=lambda: all(p.alive() for p in everyone))

        decisions = read_decisions(pipeline.settings)
        latest = assert_expected_without_gaps(decisions)
        # Each server's latest decision is what `patchgate evaluate --at <its last event>` gives.
        last_seen = {(server, org): at for server, org, at in
                     client.sql(pipeline.settings, "SELECT server, org, last_seen FROM servers")["rows"]}
        policy_settings = load_settings(CONFIG, environ={})
        for key, decision in latest.items():
            out = io.StringIO()
            evaluate(policy_settings, [str(SAMPLES)], last_seen[key], out, io.StringIO())
            rows = {(r["server"], r["org"]): r for r in map(json.loads, out.getvalue().splitlines())}
            assert rows[key] == evaluate_row(decision), key
        # Every decision stored once: as many rows as versions, before any merge.
        stored = client.sql(pipeline.settings, "SELECT count(), uniqExact(server_id, version) FROM decisions")["rows"]
        assert stored == [[len(decisions), len(decisions)]]

        # The workers' metrics moved: together they parsed the lines shipped, none twice (the
        # counter leaves out a line that reached no parser, such as one rejected before).
        lines_after = [metric(pipeline.worker_web(n, "/metrics"), "patchgate_lines_total") for n in workers]
        assert lines_before == 0 and 0.99 * shipped <= sum(lines_after) <= shipped
        assert sum(1 for count in lines_after if count > 0) >= 2
        sink_metrics = urllib.request.urlopen(f"http://127.0.0.1:{pipeline.settings.web_port}/metrics", timeout=10)
        assert metric(sink_metrics.read().decode(), "patchgate_sink_batch_rows_count") > 0
    finally:
        pipeline.close()


def test_two_workers_killed_one_while_the_other_restarts_and_a_stopped_sink_lose_nothing(tmp_path):
    result = fault_scenarios.scale_out(tmp_path, lines=20_000, load_s=40.0, sink_stop_s=8.0)
    assert result.holds, result.describe()
