"""The fault campaign: the real pipeline under the faults an operator meets, with figures.

    python bench/faults.py [--only kill9,broker,clickhouse,poison,baddeploy,disk,scaleout,...] [--quick]
                           [--repeat N] [--json results.json] [--folder DIR]

Runs on a broker of its own (deploy/kafka/kafka.sh with PATCHGATE_KAFKA_HOME=/tmp/faults-kafka on
ports 19092/19093; started if it is not running, stopped at the end), never the shared one on
9092, because one scenario stops it. The cluster-* scenarios run on a secured three-broker cluster
of its own instead (deploy/kafka/cluster.sh with PATCHGATE_CLUSTER_HOME=/tmp/faults-cluster and
CLUSTER_BASE_PORT=49092: clients on 49092-49094, controllers on 49192-, replication on 49292-;
started with empty nodes if it is not running, stopped at the end), never the test suite's on
29092. Every scenario starts real processes (`patchgate run` with embedded ClickHouse, or
`patchgate worker` and `patchgate sink`, `patchgate ship --follow`, `patchgate mta`) in a folder of
its own under --folder (default .bench/faults-<time>), where their logs stay.

    kill9       20 workers killed with SIGKILL at seeded random points of a paced 200k-line load:
                no decision lost, duplicated or conflicting; every ClickHouse row once (read with
                FINAL); the latest decisions equal an offline replay of the same files
    broker      the broker stopped for 30 s mid-stream, then started: worker, shipper and mta live
                through it and go on, no line is lost; then as kill9
    kill9-lines, broker-lines
                as kill9 and broker, with the files shipped by kcat one record per line (keyed by
                path, bench/kcat_follow.py) instead of `patchgate ship`'s packed records: the
                repacker in front of the worker; no line lost or repeated on mail.logs.raw
    clickhouse  ClickHouse writes refused and hanging for 30 s (bench/fault_worker.py): the backlog
                waits in Kafka, /health answers, the sink catches up; then as kill9
    poison      1M lines, the samples with mutated lines and files of random bytes: no crash,
                every bad line evaluate reports in the DLQ with file, line and byte, decisions as
                evaluate's
    baddeploy   unknown-schema records on mail.observations: the worker stops at the dead-letter
                limit with an error naming it and commits nothing past the first bad record
    disk        the data folder's tmpfs fills up mid-stream: a clear error and a stop; after the
                space is freed a restart resumes, CHECK TABLE finds no broken part; then as kill9
    scaleout    3 `patchgate worker` processes and a `patchgate sink` on 12 partitions under a paced
                120k-line load: one worker killed with SIGKILL, a second while the first restarts,
                then the sink stopped for 20 s; takeover timed (kill to the next commit on a
                partition the killed worker held); then as kill9
    scaleout-nostandby  the same without standby replicas (PATCHGATE_STANDBY_REPLICAS=0)

On the cluster, a pipeline as a site runs one there: the operator applies the ACLs `patchgate
kafka-acls` prints (with Kafka's own tool) and creates the topics (3 replicas, 2 in sync), and a
`patchgate worker`, a `patchgate sink`, a following shipper and `patchgate mta` each run as their
role's user, under a paced load (75k, 150k, 60k lines over 150, 300, 120 s), `mta` asked for a
decision every second while the fault lasts. Figures, for each phase of the fault (kill to start,
start to 30 s after, ...): the longest stall of lines on mail.logs.raw, of the observations the
workers parse and of the server states they decide on (their changelog), on the partitions busy
before the fault, and how long until every one flowed again (no stall over 3 s after); decisions
themselves come in bursts as the load's servers cross a stage. The samples stay in the scenario's
flow.json. Then no line lost or repeated on mail.logs.raw, and as broker:

    cluster-kill9    the broker that leads the most partitions of mail.logs.raw and mail.decisions
                     killed with SIGKILL, started again 25 s later
    cluster-rolling  the three brokers stopped (SIGTERM) and started again one at a time, each once
                     the one before is listed again and every replica of the cluster is in sync
    cluster-freeze   the broker that leads the most partitions frozen with SIGSTOP for 30 s (hung,
                     not dead: its connections stay open), then SIGCONT

"As kill9" except that a decision published again when a batch is read again (at least once), or
sent again by a producer whose broker went away before it answered, is a figure there, not a
failure: only kill9's row asks for none.

--quick runs every scenario smaller (about 10 minutes in all, and 10 more for the cluster's). Prints a
Markdown table, one row per scenario run, with its figures and time; --json writes the same rows as
JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fault_scenarios as scenarios
from fault_checks import Result
from fault_rig import ROOT, OwnBroker, OwnCluster

# name -> (scenario, full-size arguments, --quick arguments)
SCENARIOS: dict[str, tuple[Callable[..., Result], dict[str, Any], dict[str, Any]]] = {
    "kill9": (scenarios.worker_kill_9, {"lines": 200_000, "kills": 20}, {"lines": 40_000, "kills": 5}),
    "broker": (scenarios.broker_down, {"lines": 60_000, "outage_s": 30.0}, {"lines": 30_000, "outage_s": 30.0}),
    "kill9-lines": (scenarios.worker_kill_9, {"lines": 200_000, "kills": 20, "one_line": True},
                    {"lines": 40_000, "kills": 5, "one_line": True}),
    "broker-lines": (scenarios.broker_down, {"lines": 60_000, "outage_s": 30.0, "one_line": True},
                     {"lines": 30_000, "outage_s": 30.0, "one_line": True}),
    "clickhouse": (scenarios.clickhouse_failing, {"lines": 60_000, "outage_s": 30.0},
                   {"lines": 30_000, "outage_s": 30.0}),
    "poison": (scenarios.poison, {"lines": 1_000_000}, {"lines": 100_000}),
    "baddeploy": (scenarios.bad_deploy, {}, {}),
    "disk": (scenarios.disk_pressure, {"lines": 40_000}, {"lines": 20_000}),
    "scaleout": (scenarios.scale_out, {"lines": 120_000}, {"lines": 30_000, "load_s": 40.0, "sink_stop_s": 10.0}),
    "scaleout-nostandby": (scenarios.scale_out, {"lines": 120_000, "standby_replicas": 0},
                           {"lines": 30_000, "load_s": 40.0, "sink_stop_s": 10.0, "standby_replicas": 0}),
    "cluster-kill9": (scenarios.cluster_kill_9, {"lines": 75_000, "load_s": 150.0},
                      {"lines": 20_000, "load_s": 120.0, "down_s": 20.0, "lead_s": 15.0}),
    "cluster-rolling": (scenarios.cluster_rolling, {"lines": 150_000, "load_s": 300.0},
                        {"lines": 40_000, "load_s": 240.0, "lead_s": 15.0}),
    "cluster-freeze": (scenarios.cluster_freeze, {"lines": 60_000, "load_s": 120.0},
                       {"lines": 20_000, "load_s": 110.0, "lead_s": 15.0}),
}
# The rows that stop the campaign's single broker themselves.
ON_BROKER = ("broker", "broker-lines")
# The rows that run on the campaign's cluster; the others run on its single broker.
ON_CLUSTER = ("cluster-kill9", "cluster-rolling", "cluster-freeze")


def markdown(results: list[scenarios.Result]) -> str:
    rows = ["| fault | holds | time | figures | what did not hold |", "|---|---|---|---|---|"]
    for result in results:
        figures = "; ".join(f"{name}: {value}" for name, value in result.figures.items())
        failed = "<br>".join(_cell(failure.splitlines()[0], limit=300) for failure in result.failures) or "—"
        rows.append(f"| {result.fault} | {'yes' if result.holds else '**no**'} | {result.seconds:.0f} s | "
                    f"{_cell(figures)} | {failed} |")
    return "\n".join(rows)


def _cell(text: str, limit: int = 2000) -> str:
    """Text fit for a table cell: printable, no pipes, not too long."""
    printable = "".join(c if c.isprintable() else "?" for c in text)
    return (printable[:limit] + " ..." if len(printable) > limit else printable).replace("|", "\\|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller loads and fewer kills")
    parser.add_argument("--repeat", type=int, default=1, help="run each scenario this many times")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--folder", type=Path, help="where scenarios keep their data and logs")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if "disk" in chosen and os.geteuid() != 0:
        parser.error("the disk scenario mounts a tmpfs: run as root, or leave it out with --only")
    folder = args.folder or ROOT / ".bench" / f"faults-{time.strftime('%Y%m%d-%H%M%S')}"

    broker = OwnBroker() if any(name not in ON_CLUSTER for name in chosen) else None
    cluster = OwnCluster() if any(name in ON_CLUSTER for name in chosen) else None
    results = []
    try:
        if broker is not None:
            if not broker.running():
                broker.start()
            # Every pipeline on the single broker uses it; those on the cluster bring their own settings.
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        if cluster is not None and not cluster.running():
            cluster.start()
        for round_ in range(args.repeat):
            for name in chosen:
                run, full, quick = SCENARIOS[name]
                extra = {"broker": broker} if name in ON_BROKER else {"cluster": cluster} if name in ON_CLUSTER else {}
                result = run(folder / f"{name}-{round_ + 1}", **extra, **(quick if args.quick else full))
                print(result.describe(), file=sys.stderr, flush=True)
                results.append(result)
    finally:
        for own in (broker, cluster):
            if own is not None:
                own.stop()
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps([
            {"fault": r.fault, "holds": r.holds, "seconds": round(r.seconds, 1), "figures": r.figures,
             "failures": r.failures}
            for r in results], indent=2, default=str))
    print(f"logs and data: {folder}", file=sys.stderr)
    return 0 if all(r.holds for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
