"""The fault campaign's scenarios, one function each: run the real pipeline, inject the fault,
measure, and return a Result with the figures and what did not hold.

bench/faults.py runs them at full size on a broker of its own (the cluster_* ones on a secured
three-broker cluster of its own) and prints the table; tests/integration/test_faults.py runs some
of them small. Every scenario works in a folder of its own (logs of every process it started are
there) and stops what it started, also when it fails.
"""
from __future__ import annotations

import base64
import errno
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fault_inputs
from fault_checks import (
    LineAudit,
    Result,
    audit_outcome,
    audit_raw_lines,
    check_line_shipper,
    check_shipper,
    dead_letters,
    latest,
    offline,
    replay_mismatches,
    scenario,
)
from fault_rig import (
    ClusterPipeline,
    FlowSampler,
    GrowingLogs,
    LagSampler,
    OwnBroker,
    OwnCluster,
    Pipeline,
    Probe,
    Process,
    WebProbe,
    committed_offset,
    committed_total,
    drain,
    end_offsets,
    first_times,
    leaders,
    stop_gracefully,
    under_replicated,
    until_progress,
)

from pipeline import kafka_clients
from pipeline.contracts import records, topics
from pipeline.contracts.avro import ENFORCEMENT_DECISION, MAGIC, SERVER_OBSERVATION
from pipeline.domain.events import ServerObservation
from pipeline.edges.decisions import read_decisions
from pipeline.kafka_admin import lag, wait_until_drained
from testkit.ports import free_port

# A worker's log line that says the disk is full, in the words of Python, RocksDB or ClickHouse.
NO_SPACE = re.compile(r"no space left|ENOSPC|not enough (free )?space|cannot reserve .*space|disk is full", re.I)
# kafka-python's line in `patchgate mta`'s log when it has a connection to the broker again.
MTA_CONNECTED = re.compile(r"^(?P<at>\S+ \S+) INFO kafka\.net\.connection: .*\(connected\)>: Connected")
# A schema fingerprint no schema file has: records of a writer deployed with a schema nobody registered.
UNKNOWN_FINGERPRINT = bytes.fromhex("fa17deadbeef0001")
BAD_DEPLOY_SERVER = "ex16.bad-deploy.example"
# Where the worker's dead-letter limit error says the record that exceeded it was.
TRIPPED_AT = re.compile(r"the last at \S+/(?P<partition>\d+)/(?P<offset>\d+)")


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:.1f} s / {ordered[-1]:.1f} s"


@scenario("worker kill -9")
def worker_kill_9(result: Result, folder: Path, lines: int = 200_000, kills: int = 20, seed: int = 9,
                  seconds_per_kill: float = 20.0, one_line: bool = False) -> None:
    """Workers killed with SIGKILL at seeded random points of a paced load, some while starting
    (table recovery, joining the group), most while processing; a last one drains the rest.
    `one_line`: the files are shipped by kcat, one record per line, not by `patchgate ship`."""
    rng = random.Random(seed)
    pipeline = Pipeline(folder)
    # Paced so that the load lasts about as long as the kills take.
    load = GrowingLogs(folder / "logs", fault_inputs.tracking_logs(lines, seed),
                       rate=lines / (kills * seconds_per_kill))
    try:
        shipper = _follow(result, pipeline, load, one_line)
        load.start()
        recoveries, phases, under_load = [], Counter[str](), 0
        for _ in range(kills):
            worker = pipeline.worker()
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.5, 10.0))
                phases["while starting"] += 1
            else:
                recoveries.append(until_progress(pipeline, worker, load))
                time.sleep(rng.uniform(0.1, 3.0))
                phases["while processing"] += 1
            if not result.expect(worker.alive(), f"a worker exited before it was killed:\n{worker.tail()}"):
                break
            under_load += not load.done.is_set()
            worker.kill()
        load.wait()
        _check_follower(result, pipeline, shipper, load, one_line)
        worker = pipeline.worker()
        recovered = until_progress(pipeline, worker, load)
        drained = drain(pipeline, worker, timeout=600)
        result.figures.update({
            "lines": f"{load.total:,}", "kills": f"{sum(phases.values())} ({under_load} under load; "
            + ", ".join(f"{n} {phase}" for phase, n in sorted(phases.items())) + ")",
            "restart to first commit p50/max": _seconds(recoveries + [recovered]),
            "last drain": f"{drained:.1f} s",
        })
        audit_outcome(result, pipeline, load.paths)
        status = stop_gracefully(worker)
        result.expect(status == 0, f"the last worker stopped with status {status}")
    finally:
        pipeline.close()


def ask_policy(port: int, host: str, timeout: float = 5.0) -> str:
    """`patchgate mta`'s answer to a Postfix policy request for a client named `host`."""
    request = (f"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nclient_name={host}\n"
               f"helo_name={host}\nsender=a@b.example\nrecipient=jo@example.net\n\n")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request.encode())
        answer = b""
        while not answer.endswith(b"\n\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode().strip()


def _reconnected_after(mta: Process, since: float) -> str:
    """Seconds from `since` (wall clock) to the first broker connection `patchgate mta` logged after it."""
    for line in mta.text().splitlines():
        found = MTA_CONNECTED.match(line)
        if found:
            at = datetime.strptime(found["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007 - local, as logged
            if at >= since:
                return f"{at - since:.1f} s"
    return "never"


def _cached_versions(cache: Path) -> dict[str, int]:
    """server id -> version in `patchgate mta`'s decision cache file."""
    if not cache.exists():
        return {}
    found = {}
    for line in json.loads(cache.read_text()):
        decision = records.decision_from_record(ENFORCEMENT_DECISION.decode(base64.b64decode(line)))
        found[decision.server_id] = decision.version
    return found


@scenario("broker down")
def broker_down(result: Result, folder: Path, broker: OwnBroker, lines: int = 60_000, outage_s: float = 30.0,
                seed: int = 10, one_line: bool = False) -> None:
    """The broker stopped for `outage_s` in the middle of a paced load, then started again, with a
    worker, a following shipper and `patchgate mta` running through it, none of them restarted.
    `one_line`: the files are shipped by kcat, one record per line, not by `patchgate ship`."""
    pipeline = Pipeline(folder)
    load = GrowingLogs(folder / "logs", fault_inputs.tracking_logs(lines, seed, lines_per_server=max(500, lines // 10)),
                       rate=lines / (3 * outage_s))
    mta_port = free_port()
    try:
        worker = pipeline.worker()
        pipeline.wait_for_web(worker)
        mta = pipeline.mta(mta_port)
        shipper = _follow(result, pipeline, load, one_line)
        load.start()
        time.sleep(outage_s)
        decided = latest(read_decisions(pipeline.settings))
        if not result.expect(bool(decided), "no decision before the outage: the load did not flow"):
            return
        host = next(iter(decided.values())).hostname
        raw_before = sum(end_offsets(pipeline.settings, topics.RAW).values())
        committed_before = committed_total(pipeline.settings)

        stop_started = time.monotonic()
        broker.stop()
        down = time.monotonic()
        answers, probes = 0, 0
        while time.monotonic() - down < outage_s:
            probes += 1
            try:
                answers += ask_policy(mta_port, host).startswith("action=")
            except OSError:
                pass
            time.sleep(1.0)
        alive_during = {"worker": worker.alive(), "shipper": shipper.alive(), "mta": mta.alive()}
        broker.start()
        back, back_wall = time.monotonic(), time.time()
        cache = pipeline.folder / "decision-cache.json"
        cached = _cached_versions(cache)
        shipper_back, worker_back, mta_back = first_times((
            lambda: sum(end_offsets(pipeline.settings, topics.RAW).values()) > raw_before,
            lambda: committed_total(pipeline.settings) > committed_before,
            lambda: _cached_versions(cache) != cached), 180)
        load.wait()
        lines_audit = _check_follower(result, pipeline, shipper, load, one_line)
        drained = drain(pipeline, worker, timeout=300)
        newest = {server: d.version for server, d in latest(read_decisions(pipeline.settings)).items()}
        [mta_complete] = first_times((lambda: _cached_versions(cache) == newest,), 120)
        result.figures.update({
            "lines": f"{load.total:,}",
            "broker": f"stopped in {down - stop_started:.0f} s, down {outage_s:.0f} s, "
                      f"started in {back - down - outage_s:.0f} s",
            "mta answered while down": f"{answers}/{probes}",
            "after the start: shipper sent, worker committed, mta took a decision": " / ".join(
                "never" if t is None else f"{t:.1f} s" for t in (shipper_back, worker_back, mta_back)),
            "mta reconnected after": _reconnected_after(mta, back_wall),
            "mta cache complete after the drain": "never" if mta_complete is None else f"{mta_complete:.1f} s",
            "lines on the topic/lost/repeated": f"{lines_audit.lines:,}/{lines_audit.lost}/{lines_audit.duplicated}",
            "drain after the load": f"{drained:.1f} s",
        })
        for name, alive in alive_during.items():
            result.expect(alive, f"{name} exited during the outage")
        result.expect(answers == probes, f"the MTA answered {answers} of {probes} requests during the outage")
        result.expect(shipper_back is not None, "the shipper did not send again after the broker was back")
        result.expect(worker_back is not None, "the worker did not commit again after the broker was back")
        result.expect(mta_back is not None, "the MTA took no decision after the broker was back")
        result.expect(mta_complete is not None, "the MTA's cache did not catch up with the decisions")
        result.expect(lines_audit.lost == 0, f"{lines_audit.lost} lines never reached mail.logs.raw")
        audit_outcome(result, pipeline, load.paths, repeats_allowed=True)
        result.expect(worker.alive() and mta.alive(), "the worker or the MTA did not survive to the end")
        result.expect(stop_gracefully(worker) == 0, "the worker did not stop cleanly at the end")
    finally:
        pipeline.close()
        if not broker.running():
            broker.start()


def _health_route(pipeline: Pipeline) -> str:
    """/health where the worker has one, else a page Faust answers without ClickHouse."""
    try:
        pipeline.web("/health", timeout=10)
        return "/health"
    except urllib.error.HTTPError as error:
        return "/health" if error.code != 404 else "/router/"


@scenario("ClickHouse failing")
def clickhouse_failing(result: Result, folder: Path, lines: int = 60_000, outage_s: float = 30.0, hang_s: float = 35.0,
                       mode: str = "mixed", seed: int = 11) -> None:
    """ClickHouse writes fail for `outage_s` (bench/fault_worker.py: refused, and hanging past the
    sink's timeout, in turn) in the middle of a paced load."""
    flag = folder / "clickhouse-fault"
    pipeline = Pipeline(folder, env={"PATCHGATE_FAULT_FLAG": str(flag), "PATCHGATE_FAULT_HANG_S": str(hang_s)})
    load = GrowingLogs(folder / "logs", fault_inputs.tracking_logs(lines, seed, lines_per_server=max(500, lines // 10)),
                       rate=lines / (3 * outage_s))
    sink = LagSampler(pipeline.settings, (topics.OBSERVATIONS, topics.DECISIONS))
    ingest = LagSampler(pipeline.settings, (topics.RAW, topics.PACKED))
    try:
        worker = pipeline.worker(faulty=True)
        pipeline.wait_for_web(worker)
        health = WebProbe(pipeline, _health_route(pipeline))
        report = WebProbe(pipeline, "/report", timeout=10.0)
        shipper = pipeline.shipper([load.folder], follow=True)
        load.start()
        sink.start()
        ingest.start()
        time.sleep(outage_s)
        fault_started = sink.now()
        flag.write_text(mode)
        health.start()
        report.start()
        time.sleep(outage_s)
        flag.unlink()
        health.stop()
        report.stop()
        fault_ended = sink.now()
        before = sink.peak(0, fault_started)
        [caught_up] = first_times((lambda: lag(pipeline.settings, sink.names) <= before,), 300)
        load.wait()
        check_shipper(result, shipper, load.total)
        drain(pipeline, worker, timeout=300)
        sink.stop()
        ingest.stop()
        log = worker.text()
        result.figures.update({
            "lines": f"{load.total:,}", "fault": f"{mode} for {outage_s:.0f} s (hangs {hang_s:.0f} s)",
            "sink lag before/peak": f"{before:,}/{sink.peak(fault_started, fault_ended + hang_s):,}",
            "ingest lag peak": f"{ingest.peak(fault_started, fault_ended):,}",
            f"{health.path} answered": str(health), "/report answered": str(report),
            "failed writes logged": len(re.findall(r"ClickHouse write of .* (failed|takes over)", log)),
            "caught up after the fault": "never" if caught_up is None else f"{caught_up:.1f} s",
        })
        result.expect(worker.alive(), f"the worker exited:\n{worker.tail()}")
        result.expect(sink.peak(fault_started, fault_ended + hang_s) > before,
                      "no backlog built up during the fault: were the writes failing?")
        result.expect(health.answered == health.asked, f"{health.path} answered {health} during the fault")
        result.expect(caught_up is not None, "the sink did not catch up within 300 s of the fault's end")
        audit_outcome(result, pipeline, load.paths, repeats_allowed=True)
        result.expect(stop_gracefully(worker) == 0, "the worker did not stop cleanly at the end")
    finally:
        sink.stop()
        ingest.stop()
        pipeline.close()


def _line_starts(path: Path) -> list[int]:
    data = path.read_bytes()
    return [0] + [m.end() for m in re.finditer(b"\n", data) if m.end() < len(data)]


@scenario("poison")
def poison(result: Result, folder: Path, lines: int = 1_000_000, seed: int = 12, per_file: int = 10_000,
           random_files: int = 4) -> None:
    """The real samples repeated with mutated lines and files of random bytes, shipped as they are:
    the worker must not crash, every bad line `patchgate evaluate` reports must reach the
    dead-letter topic with its file, line and byte, and the good lines must decide what evaluate
    decides."""
    paths = [p.resolve() for p in fault_inputs.poison(folder / "logs", lines, seed, per_file=per_file,
                                                      random_files=random_files)]
    starts = {str(p): _line_starts(p) for p in paths}
    result.figures["lines"] = f"{sum(len(s) for s in starts.values()):,} in {len(paths)} files"
    pipeline = Pipeline(folder, config=fault_inputs.SAMPLES_CONFIG)
    try:
        expected = offline(paths, pipeline.settings)
    except Exception as exc:  # the reference itself fails on the poison: a finding, and nothing to compare with
        result.failures.append(f"patchgate evaluate fails on the poison: {type(exc).__name__}: {str(exc)[:200]}")
        expected = None
    try:
        worker = pipeline.worker()
        pipeline.wait_for_web(worker)
        started = time.monotonic()
        shipper = pipeline.shipper([folder / "logs"], follow=False)
        status = shipper.wait(1800)
        result.expect(status == 0, f"the shipper ended with status {status}:\n{shipper.tail()}")
        try:
            drain(pipeline, worker, timeout=1800)
        finally:
            result.figures["agent crashes"] = worker.agent_crashes()
            result.figures["worker"] = "running" if worker.alive() else f"exited with {worker.process.returncode}"
        result.figures["shipped and processed in"] = f"{time.monotonic() - started:.0f} s"
        letters = dead_letters(pipeline.settings)
        # A record that could not be read at all is named by topic/partition/offset, not by a file.
        of_records = [dl for dl in letters if dl["source"].startswith(f"{dl['topic']}/")]
        of_lines = Counter((dl["source"], dl["line"], dl["offset"]) for dl in letters if dl not in of_records)
        misplaced = [key for key in of_lines if key[0] in starts and None not in key
                     and (key[1] > len(starts[key[0]]) or starts[key[0]][key[1] - 1] != key[2])]
        # A line a shipper wrapped in a JSON envelope (Filebeat gives a byte, no line) is placed by
        # the envelope's own line and byte in the file that was shipped (via_*), when it has them.
        unplaced_line = [dl for dl in letters if dl not in of_records and dl["line"] is None and dl["via_line"] is None]
        unplaced_byte = [dl for dl in letters if dl not in of_records and dl["offset"] is None
                         and dl["via_offset"] is None]
        without_line, without_byte = len(unplaced_line), len(unplaced_byte)
        result.figures.update({
            "dead letters": f"{len(letters):,}",
            "without line/without byte/misplaced": f"{without_line}/{without_byte}/{len(misplaced)}",
        })
        result.expect(not of_records,
                      f"{len(of_records)} dead letters name a record, not a line, e.g. {of_records[:1]}")
        result.expect(without_line == 0, f"{without_line} dead letters without a line number, e.g. "
                                         f"{[(dl['source'], dl['line'], dl['offset']) for dl in unplaced_line[:3]]}")
        result.expect(without_byte == 0, f"{without_byte} dead letters without a byte offset, e.g. "
                                         f"{[(dl['source'], dl['line'], dl['offset']) for dl in unplaced_byte[:3]]}")
        result.expect(not misplaced, f"{len(misplaced)} dead letters whose byte is not where their line starts, "
                                     f"e.g. {misplaced[:3]}")
        if expected is not None:
            # Counted, not only named: one line may have two errors, and envelopes of one inner file
            # name the same place. More letters than errors at a place are repeats (at least once).
            bad = expected.bad_lines()
            missing, surplus = bad - of_lines, of_lines - bad
            extra = {key: n for key, n in surplus.items() if key not in bad}
            differ = replay_mismatches(read_decisions(pipeline.settings), expected)
            result.figures.update({
                "bad lines (evaluate)": f"{sum(bad.values()):,}",
                "missing/extra/repeated": f"{sum(missing.values())}/{sum(extra.values())}/"
                                          f"{sum(surplus.values()) - sum(extra.values())}",
                "replay mismatches": len(differ)})
            result.expect(not missing, f"{sum(missing.values())} bad lines not in the dead-letter topic, "
                                       f"e.g. {sorted(missing, key=str)[:3]}")
            result.expect(not extra, f"{sum(extra.values())} dead letters evaluate did not report, "
                                     f"e.g. {sorted(extra, key=str)[:3]}")
            result.expect(not differ, f"{len(differ)} servers decided otherwise than evaluate, e.g. {differ[:3]}")
        result.expect("Traceback" not in worker.text(), f"the worker logged a traceback:\n{worker.tail()}")
        result.expect(stop_gracefully(worker) == 0, "the worker did not stop cleanly")
    finally:
        pipeline.close()


@scenario("bad deploy")
def bad_deploy(result: Result, folder: Path, max_consecutive: int | None = None, max_ratio: float | None = None,
               ratio_records: int = 6000, timeout_s: float = 120.0) -> None:
    """Records of an unknown schema on mail.observations, as a deploy nobody registered writes them:
    a run of them beyond dead_letters.max_consecutive, and (on a pipeline of its own) every other
    record bad over `ratio_records`, beyond max_ratio. Each time the worker must stop with an
    error line naming the limit and commit nothing past the record that tripped it (those before
    it, within the limit, are dead-lettered like any bad record). None: the defaults
    (1000 in a row, 0.1), else they go to the worker as PATCHGATE_DLQ_MAX_CONSECUTIVE and _RATIO."""
    in_a_row = max_consecutive or 1000
    env = {}
    if max_consecutive:
        env["PATCHGATE_DLQ_MAX_CONSECUTIVE"] = str(max_consecutive)
    if max_ratio:
        env["PATCHGATE_DLQ_MAX_RATIO"] = str(max_ratio)
    good = [_observation(n) for n in range(max(ratio_records, 3 * in_a_row + 100))]
    runs = {
        "max_consecutive": good[:100] + [_unknown_schema(r) for r in good[100:100 + 3 * in_a_row]] + good[:100],
        "max_ratio": [r if n % 2 == 0 else _unknown_schema(r) for n, r in enumerate(good[:ratio_records])],
    }
    for limit, values in runs.items():
        pipeline = Pipeline(folder / limit, env=env)
        try:
            first_bad = _produce(pipeline.settings, values)
            worker = pipeline.worker()
            started = time.monotonic()
            status = worker.wait(timeout_s)
            stopped = time.monotonic() - started
            if status is None:
                worker.kill()
            error = next((line.strip() for line in worker.text().splitlines() if limit in line), None)
            tripped = TRIPPED_AT.search(error or "")
            # Both groups read mail.observations (enforce, and the observations sink): neither may
            # commit past the record that tripped the limit.
            by_group = [committed_offset(pipeline.settings, topics.OBSERVATIONS, first_bad.partition, group)
                        for group in (pipeline.settings.app_id, topics.sink_group(pipeline.settings))]
            committed = max((offset for offset in by_group if offset is not None), default=None)
            source = pipeline.settings.topic(topics.OBSERVATIONS)
            letters = sum(1 for letter in dead_letters(pipeline.settings) if letter["topic"] == source)
            bad = sum(1 for value in values if value[2:10] == UNKNOWN_FINGERPRINT)
            result.figures[limit] = (
                f"{bad:,} bad of {len(values):,}: " + (f"exit {status} after {stopped:.0f} s" if status is not None
                                                       else f"still running after {timeout_s:.0f} s")
                + f", committed (workers/sinks) {'/'.join(str(o) for o in by_group)} (first bad at {first_bad.offset}, "
                f"limit tripped at "
                f"{tripped['offset'] if tripped else '?'}), {letters:,} dead letters")
            result.figures[f"{limit} error"] = (error or "none")[:160]
            result.expect(status not in (None, 0), f"{limit}: the worker " + (
                f"ran on for {timeout_s:.0f} s" if status is None else "exited with status 0")
                + f" over {bad:,} bad records ({letters:,} dead letters)")
            result.expect(error is not None, f"{limit}: no line of the worker's log names {limit}")
            # Bad records within the limit are dead-lettered and may be committed; the one that
            # trips it, and what follows, must not be.
            bound = int(tripped["offset"]) if tripped else first_bad.offset
            result.expect(committed is None or committed <= bound,
                          f"{limit}: offsets committed up to {committed}, past the record that tripped the limit "
                          f"at {bound}")
        finally:
            pipeline.close()


def _observation(n: int) -> bytes:
    """The n-th sighting of one old Exchange 2016 server, a minute after the one before."""
    at = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=n)
    return SERVER_OBSERVATION.encode(records.observation_record(ServerObservation.once(
        BAD_DEPLOY_SERVER, BAD_DEPLOY_SERVER, None, at, "15.1.2507.9", "msgtrk-version", f"<{n}@bad-deploy>", 1000)))


def _unknown_schema(record: bytes) -> bytes:
    """The same record as a writer with an unregistered schema sends it: another fingerprint."""
    return MAGIC + UNKNOWN_FINGERPRINT + record[len(MAGIC) + len(UNKNOWN_FINGERPRINT):]


def _produce(settings, values: list[bytes]):
    """Send the records to mail.observations under one key (one partition, in order); the
    metadata (partition, offset) of the first one of an unknown schema."""
    producer = kafka_clients.producer(settings, acks="all")
    try:
        sent = [producer.send(settings.topic(topics.OBSERVATIONS), key=BAD_DEPLOY_SERVER.encode(), value=value)
                for value in values]
        producer.flush()
        return next(future.get() for future, value in zip(sent, values, strict=True)
                    if value[2:10] == UNKNOWN_FINGERPRINT)
    finally:
        producer.close()


def _fill(path: Path) -> int:
    """Write zeros to `path` until its file system is full; the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[:len(chunk) // 16 or 1]


def _check_tables(pipeline: Pipeline) -> list[str]:
    """Parts of the MergeTree tables that CHECK TABLE finds broken, as "table part: message".

    It answers one row per part (part, is_passed, message), or one empty row for an empty table."""
    tables = [name for [name] in pipeline.sql(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'")]
    return [f"{table} {row[0]}: {row[-1]}" for table in tables for row in pipeline.sql(f"CHECK TABLE {table}")
            if len(row) >= 2 and str(row[1]) != "1"]


@scenario("disk pressure")
def disk_pressure(result: Result, folder: Path, size_mb: int = 64, lines: int = 40_000, load_s: float = 60.0,
                  stop_within_s: float = 90.0, seed: int = 13) -> None:
    """The data folder on a small tmpfs that fills up 10 s into a paced load of `load_s`: the worker
    must stop within `stop_within_s`, saying why; then the space is freed and the worker started again."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(data)], check=True)
    pipeline = Pipeline(folder, data_dir=data)
    load = GrowingLogs(folder / "logs", fault_inputs.tracking_logs(lines, seed, lines_per_server=2000),
                       rate=lines / load_s)
    try:
        worker = pipeline.worker()
        pipeline.wait_for_web(worker)
        used_at_start = shutil.disk_usage(data).used
        shipper = pipeline.shipper([load.folder], follow=True)
        load.start()
        time.sleep(10)
        filler = data / "filler"
        filled = _fill(filler)
        full_at = time.monotonic()
        status = worker.wait(stop_within_s)
        stopped = time.monotonic() - full_at
        if status is None:
            worker.kill()
        log = worker.text()
        error = next((line for line in log.splitlines() if NO_SPACE.search(line)), None)
        filler.unlink()
        restarted = pipeline.worker()
        pipeline.wait_for_web(restarted)
        resumed = until_progress(pipeline, restarted, load)
        load.wait()
        check_shipper(result, shipper, load.total)
        drain(pipeline, restarted, timeout=300)
        broken = _check_tables(pipeline)
        result.figures.update({
            "tmpfs": f"{size_mb} MB, {used_at_start / 2**20:.0f} MB used at start, filled with {filled / 2**20:.0f} MB",
            "worker": f"still running after {stop_within_s:.0f} s" if status is None
            else f"exit {status} {stopped:.1f} s after the disk filled",
            "error line": (error or "none").strip()[:160],
            "restart to first commit": f"{resumed:.1f} s", "broken parts (CHECK TABLE)": len(broken),
        })
        result.expect(status is not None,
                      f"the worker did not stop within {stop_within_s:.0f} s of the disk filling up")
        result.expect(status != 0, "the worker exited with status 0 on a full disk")
        result.expect(error is not None, "no line of the worker's log says the disk is full")
        result.expect(not broken, f"CHECK TABLE failed: {broken}")
        audit_outcome(result, pipeline, load.paths, repeats_allowed=True)
        result.expect(stop_gracefully(restarted) == 0, "the restarted worker did not stop cleanly")
    finally:
        pipeline.close()
        subprocess.run(["umount", "-l", str(data)], check=False)


def _held_partitions(pipeline: Pipeline, number: int) -> list[str]:
    """The topic/partition names worker `number` holds, from its /health."""
    return json.loads(pipeline.worker_web(number, "/health")).get("partitions", [])


def _until_workers_hold(pipeline: Pipeline, workers: dict[int, Process], timeout: float = 180) -> None:
    """Until every worker answers ok on /healthz (it joined the group) holding mail.logs.packed
    partitions, and together they hold all of them."""
    packed = pipeline.settings.topic(topics.PACKED)
    deadline = time.monotonic() + timeout
    while True:
        held: set[str] = set()
        try:
            for number, worker in workers.items():
                if not worker.alive():
                    raise RuntimeError(f"worker {number} exited at start:\n{worker.tail()}")
                own = {p for p in _held_partitions(pipeline, number) if p.startswith(f"{packed}/")}
                pipeline.worker_web(number, "/healthz")  # 503 (an OSError) until it joined the group
                if not own:
                    raise ValueError(f"worker {number} holds no partition of mail.logs.packed yet")
                held.update(own)
        except (OSError, ValueError):
            held = set()
        if len(held) == pipeline.settings.partitions:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers held {len(held)} of {pipeline.settings.partitions} packed partitions "
                               f"after {timeout:.0f} s")
        time.sleep(0.5)


def _committed_on(pipeline: Pipeline, held: list[str]) -> dict[str, int | None]:
    prefix = pipeline.settings.topic_prefix
    found = {}
    for name in held:
        topic, partition = name.rsplit("/", 1)
        found[name] = committed_offset(pipeline.settings, topic.removeprefix(prefix), int(partition))
    return found


def _kill_and_take_over(pipeline: Pipeline, workers: dict[int, Process], number: int, restart_after_s: float,
                        timeout: float = 180) -> tuple[threading.Thread, list[float]]:
    """Kill worker `number` with SIGKILL and start it again after `restart_after_s`; in the
    background, the seconds from the kill until a commit on a mail.logs.packed or mail.observations
    partition it held (another worker, or itself restarted, took over its work)."""
    held = [p for p in _held_partitions(pipeline, number)
            if p.removeprefix(pipeline.settings.topic_prefix).rsplit("/", 1)[0] in (topics.PACKED, topics.OBSERVATIONS)]
    workers[number].kill()
    killed_at = time.monotonic()
    before = _committed_on(pipeline, held)
    took: list[float] = []

    def watch() -> None:
        while time.monotonic() - killed_at < timeout:
            now = _committed_on(pipeline, held)
            if any((now[p] or 0) > (before[p] or 0) for p in held):
                took.append(time.monotonic() - killed_at)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(restart_after_s)
    workers[number] = pipeline.scaled_worker(number)
    return watcher, took


def _follow(result: Result, pipeline: Pipeline, load: GrowingLogs, one_line: bool) -> Process:
    """`patchgate ship --follow`, or with `one_line` kcat (one record per line)."""
    if one_line:
        result.fault += ", one line per record (kcat)"
        return pipeline.line_shipper(load.paths)
    return pipeline.shipper([load.folder], follow=True)


def _check_follower(result: Result, pipeline: Pipeline, shipper: Process, load: GrowingLogs,
                    one_line: bool) -> LineAudit:
    """Stop the shipper once the load is written and check its lines are on mail.logs.raw once."""
    if one_line:
        return check_line_shipper(result, shipper, pipeline.settings, {
            str(path.resolve()): source.lines for path, source in zip(load.paths, load.sources, strict=True)})
    check_shipper(result, shipper, load.total)
    return _lines_on_raw(pipeline, load)


def _lines_on_raw(pipeline: Pipeline, load: GrowingLogs) -> LineAudit:
    return audit_raw_lines(pipeline.settings, {
        str(path.resolve()): len(source.lines) for path, source in zip(load.paths, load.sources, strict=True)})


@scenario("scale out")
def scale_out(result: Result, folder: Path, lines: int = 120_000, seed: int = 11, workers: int = 3,
              load_s: float = 60.0, sink_stop_s: float = 20.0, standby_replicas: int = 1) -> None:
    """`workers` processes of `patchgate worker` and one `patchgate sink` on 12 partitions under a
    paced load: the sink stopped for `sink_stop_s` while the workers go on; then worker 1 killed
    with SIGKILL and started again, worker 2 killed while worker 1 is restarting. Takeover: from a
    kill to the next commit on a partition the killed worker held. The outcome must equal the
    offline replay, each row once."""
    pipeline = Pipeline(folder, partitions=12, env={"PATCHGATE_STANDBY_REPLICAS": str(standby_replicas)})
    load = GrowingLogs(folder / "logs", fault_inputs.tracking_logs(lines, seed), rate=lines / load_s)
    try:
        sink = pipeline.sink()
        pipeline.wait_for_web(sink)
        running = {number: pipeline.scaled_worker(number) for number in range(1, workers + 1)}
        _until_workers_hold(pipeline, running)
        shipper = pipeline.shipper([load.folder], follow=True)
        load.start()
        time.sleep(load_s * 0.1)
        # The sink stops early, while lines surely arrive: whether the workers go on says nothing
        # once the load has ended (the takeovers below last 20 to 30 s).
        result.expect(stop_gracefully(sink) == 0, f"the sink did not stop cleanly:\n{sink.tail()}")
        processed = (topics.PACKED, topics.OBSERVATIONS)
        processed_before = committed_total(pipeline.settings, processed)
        time.sleep(sink_stop_s)
        processed_while_stopped = committed_total(pipeline.settings, processed) - processed_before
        result.expect(not load.done.is_set(), "the load ended while the sink was stopped: lengthen load_s")
        result.expect(processed_while_stopped > 0, "the workers committed nothing while the sink was stopped")
        sink = pipeline.sink()
        pipeline.wait_for_web(sink)
        first, first_took = _kill_and_take_over(pipeline, running, 1, restart_after_s=1.0)
        second, second_took = _kill_and_take_over(pipeline, running, 2, restart_after_s=1.0)
        first.join()
        second.join()
        result.expect(bool(first_took and second_took), "a killed worker's partitions were not taken over in 180 s")
        load.wait()
        check_shipper(result, shipper, load.total)
        started = time.monotonic()
        everyone = [sink, *running.values()]
        wait_until_drained(pipeline.settings, 600, worker_alive=lambda: all(p.alive() for p in everyone))
        lines_audit = _lines_on_raw(pipeline, load)
        result.expect(lines_audit.lost == 0, f"{lines_audit.lost} lines never reached mail.logs.raw")
        result.figures.update({
            "lines": f"{load.total:,}", "processes": f"{workers} workers, 1 sink, 12 partitions",
            "lines on the topic/lost/repeated": f"{lines_audit.lines:,}/{lines_audit.lost}/{lines_audit.duplicated}",
            "standby replicas": standby_replicas,
            "takeover after kill -9 (first, second)": f"{first_took[0] if first_took else float('nan'):.1f} s, "
                                                      f"{second_took[0] if second_took else float('nan'):.1f} s",
            "worker commits while the sink was stopped": f"{processed_while_stopped:,} records in {sink_stop_s:.0f} s",
            "last drain": f"{time.monotonic() - started:.1f} s",
        })
        audit_outcome(result, pipeline, load.paths)
        for process in everyone:
            result.expect(stop_gracefully(process) == 0, f"{process.log.name} did not stop cleanly")
    finally:
        pipeline.close()


# What a cluster fault does, given the pipeline, the flow sampler (its clock) and the result (for
# its own figures): the moments it began, changed and ended, named, in order.
ClusterFault = Callable[[ClusterPipeline, FlowSampler, Result], list[tuple[str, float]]]
# How long after the fault's end the flow is still watched, for a stall that comes later (leaders
# moving back to a restarted broker, say).
WATCHED_AFTER_S = 30.0


def _stall(longest: float, again: float | None) -> str:
    """A phase's longest stall and when every partition flowed again ("-": no stall, "not": not in the phase)."""
    return f"{longest:.1f}/" + ("not" if again is None else "-" if again == 0 else f"{again:.1f}")


def _through_cluster_fault(result: Result, folder: Path, cluster: OwnCluster, fault: ClusterFault, lines: int,
                           load_s: float, lead_s: float, seed: int) -> None:
    """A `patchgate worker`, a `sink`, a following shipper and `mta`, each as its own principal on
    the cluster, under a paced load of `load_s`; `lead_s` into it, `fault` happens while `mta` is
    asked for a decision every second. Then: from each moment of the fault to the next, how long
    lines (on mail.logs.raw), observations and server states (the workers' output) stalled on the
    partitions that were busy before it (FlowSampler), and when every one flowed again; every line
    on the topic once, and the outcome as broker down's (repeats a figure). The flow's samples stay
    in <folder>/flow.json."""
    pipeline = ClusterPipeline(folder, cluster)
    load = GrowingLogs(folder / "logs", fault_inputs.tracking_logs(lines, seed, lines_per_server=2000),
                       rate=lines / load_s)
    mta_port = free_port()
    flow, moments = None, []
    try:
        sink = pipeline.sink()
        pipeline.wait_for_web(sink)
        worker = pipeline.scaled_worker(1)
        _until_workers_hold(pipeline, {1: worker})
        mta = pipeline.mta(mta_port)
        shipper = pipeline.shipper([load.folder], follow=True)
        flow = FlowSampler(pipeline.settings).start()
        load.start()
        time.sleep(lead_s)
        decided = latest(read_decisions(pipeline.settings))
        if not result.expect(bool(decided), "no decision before the fault: the load did not flow"):
            return
        host = next(iter(decided.values())).hostname
        mta_probe = Probe("mta", lambda: ask_policy(mta_port, host).startswith("action=")).start()
        moments = fault(pipeline, flow, result)
        mta_probe.stop()
        processes = {"worker": worker, "sink": sink, "shipper": shipper, "mta": mta}
        alive_during = {name: process.alive() for name, process in processes.items()}
        began, ended = moments[0][1], moments[-1][1]
        busy = {name: flow.busy(name, began - lead_s / 2, began) for name in flow.SERIES}
        # Watched a while after the last moment, until flowing on every busy partition.
        time.sleep(max(0.0, ended + WATCHED_AFTER_S - flow.now()))
        [flowing] = first_times((lambda: all(flow.stalls(name, busy[name], ended, flow.now())[1] is not None
                                             for name in busy),), 180)
        watched_to = flow.now()
        result.expect(not load.done.is_set(), "the load ended before the flow after the fault was watched: "
                                              "lengthen load_s")
        load.wait()
        check_shipper(result, shipper, load.total)
        drained = drain(pipeline, worker, sink, timeout=600)
        flow.stop()
        cache = pipeline.folder / "decision-cache.json"
        newest = {server: d.version for server, d in latest(read_decisions(pipeline.settings)).items()}
        [mta_complete] = first_times((lambda: _cached_versions(cache) == newest,), 120)
        lines_audit = _lines_on_raw(pipeline, load)
        result.figures["lines"] = f"{load.total:,}"
        phases = [(label, at, until) for (label, at), (_, until) in itertools.pairwise([*moments, ("", watched_to)])]
        for name, what in (("lines", "lines on mail.logs.raw"), ("parsed", "observations (parsed)"),
                           ("decided", "server states (decided on)")):
            result.figures[f"{what}: longest stall/flowing again after (s)"] = ", ".join(
                f"{label} {_stall(*flow.stalls(name, busy[name], at, until))}" for label, at, until in phases
            ) + f"; before the fault {flow.stalls(name, busy[name], began - lead_s / 2, began)[0]:.1f}"
        result.figures.update({
            "mta answered during the fault": str(mta_probe),
            "mta cache complete after the drain": "never" if mta_complete is None else f"{mta_complete:.1f} s",
            "lines on the topic/lost/repeated": f"{lines_audit.lines:,}/{lines_audit.lost}/{lines_audit.duplicated}",
            "drain after the load": f"{drained:.1f} s",
        })
        for name, alive in alive_during.items():
            result.expect(alive, f"the {name} exited during the fault:\n{processes[name].tail()}")
        result.expect(mta_probe.answered == mta_probe.asked, f"the MTA answered {mta_probe} requests during the fault")
        result.expect(flowing is not None, "lines, observations or server states did not flow on every busy "
                                           "partition again within 180 s of the fault's end")
        result.expect(mta_complete is not None, "the MTA's cache did not catch up with the decisions")
        result.expect(lines_audit.lost == 0, f"{lines_audit.lost} lines never reached mail.logs.raw")
        result.expect(lines_audit.duplicated == 0, f"{lines_audit.duplicated} lines are on mail.logs.raw twice")
        audit_outcome(result, pipeline, load.paths, repeats_allowed=True)
        for name in ("worker", "sink", "mta"):
            status = stop_gracefully(processes[name])
            result.expect(status == 0, f"the {name} stopped with status {status} at the end")
    finally:
        if flow is not None:
            flow.stop()
            flow.save(folder / "flow.json", moments)
        pipeline.close()
        cluster.heal()


def _busiest_node(pipeline: ClusterPipeline) -> tuple[int, str]:
    """The broker that leads the most partitions of mail.logs.raw and mail.decisions (of a tie, the
    lowest id), and a note of how many it leads."""
    counts = leaders(pipeline.settings, (topics.RAW, topics.DECISIONS))
    node = min(counts, key=lambda n: (-counts[n], n))
    return node, f"node {node}, leader of {counts[node]} of {sum(counts.values())} partitions"


def _until_in_sync(pipeline: ClusterPipeline, timeout: float = 180) -> str:
    """Seconds until every partition of the cluster has all its replicas in sync again."""
    [took] = first_times((lambda: under_replicated(pipeline.settings) == 0,), timeout)
    return "never" if took is None else f"{took:.0f} s"


def _kill_and_restart(cluster: OwnCluster, down_s: float) -> ClusterFault:
    def fault(pipeline: ClusterPipeline, flow: FlowSampler, result: Result) -> list[tuple[str, float]]:
        node, led = _busiest_node(pipeline)
        killed = flow.now()
        cluster.kill_node(node)
        time.sleep(down_s)
        started = flow.now()
        cluster.start_node(node)
        listed = flow.now() - started
        result.figures["broker"] = (f"{led}: killed, started {down_s:.0f} s later, listed unfenced in {listed:.0f} s, "
                                    f"all replicas in sync {_until_in_sync(pipeline)} later")
        return [("kill", killed), ("start", started)]
    return fault


@scenario("cluster: leader kill -9")
def cluster_kill_9(result: Result, folder: Path, cluster: OwnCluster, lines: int = 75_000, load_s: float = 150.0,
                   down_s: float = 25.0, lead_s: float = 20.0, seed: int = 21) -> None:
    """The broker that leads the most partitions of mail.logs.raw and mail.decisions killed with
    SIGKILL under a paced load, and started again `down_s` later."""
    _through_cluster_fault(result, folder, cluster, _kill_and_restart(cluster, down_s), lines, load_s, lead_s, seed)


def _rolling_restart(cluster: OwnCluster) -> ClusterFault:
    def fault(pipeline: ClusterPipeline, flow: FlowSampler, result: Result) -> list[tuple[str, float]]:
        moments, steps = [], []
        for node in cluster.NODES:
            stopping = flow.now()
            cluster.stop_node(node)
            stopped = flow.now() - stopping
            starting = flow.now()
            cluster.start_node(node)
            listed = flow.now() - starting
            steps.append(f"node {node} stopped in {stopped:.0f} s, listed again in {listed:.0f} s, "
                         f"in sync {_until_in_sync(pipeline)} later")
            moments += [(f"stop {node}", stopping), (f"start {node}", starting)]
        result.figures["brokers"] = "; ".join(steps)
        return moments
    return fault


@scenario("cluster: rolling restart")
def cluster_rolling(result: Result, folder: Path, cluster: OwnCluster, lines: int = 150_000, load_s: float = 300.0,
                    lead_s: float = 20.0, seed: int = 22) -> None:
    """The three brokers stopped (SIGTERM) and started again one at a time under a paced load, each
    once the one before is back and every replica in sync."""
    _through_cluster_fault(result, folder, cluster, _rolling_restart(cluster), lines, load_s, lead_s, seed)


def _freeze(cluster: OwnCluster, frozen_s: float) -> ClusterFault:
    def fault(pipeline: ClusterPipeline, flow: FlowSampler, result: Result) -> list[tuple[str, float]]:
        node, led = _busiest_node(pipeline)
        pid = cluster.pid(node)
        if pid is None:
            raise RuntimeError(f"node {node} is not running")
        frozen = flow.now()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(frozen_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        thawed = flow.now()
        result.figures["broker"] = (f"{led}: frozen (SIGSTOP) for {frozen_s:.0f} s, then SIGCONT; all replicas "
                                    f"in sync {_until_in_sync(pipeline)} later")
        return [("freeze", frozen), ("thaw", thawed)]
    return fault


@scenario("cluster: leader frozen")
def cluster_freeze(result: Result, folder: Path, cluster: OwnCluster, lines: int = 60_000, load_s: float = 120.0,
                   frozen_s: float = 30.0, lead_s: float = 20.0, seed: int = 23) -> None:
    """The broker that leads the most partitions of mail.logs.raw and mail.decisions frozen with
    SIGSTOP for `frozen_s` under a paced load (hung, not dead: its connections stay open), then
    SIGCONT."""
    _through_cluster_fault(result, folder, cluster, _freeze(cluster, frozen_s), lines, load_s, lead_s, seed)
