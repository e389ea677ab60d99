"""What the fault campaign checks once a fault is over: the decisions on mail.decisions against an
offline replay of the same files (`patchgate evaluate`'s code), ClickHouse's rows, the lines on
mail.logs.raw, and the dead letters; and the Result each scenario reports them in.
"""
from __future__ import annotations

import functools
import io
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from fault_rig import Pipeline, Process, stop_gracefully

from pipeline.catalog_files import load_catalog
from pipeline.contracts import packing, topics
from pipeline.contracts.avro import DEAD_LETTER, SERVER_OBSERVATION
from pipeline.contracts.records import observations_from_record
from pipeline.domain.policy import Decision
from pipeline.domain.replay import replay
from pipeline.domain.report import evaluate_row
from pipeline.edges.decisions import read_decisions
from pipeline.evaluate import read_observations
from testkit.isolated import read_topic

# How `patchgate evaluate` prints a bad line (ParseError): "file:line (byte N): reason", after
# "envelope position -> " for a line that came wrapped in a JSON envelope. A file name may have
# colons of its own (D:\Exchange\...).
EVALUATE_ERROR = re.compile(r"^(?:.* -> )?(?P<source>.+?)(?::(?P<line>\d+))?(?: \(byte (?P<byte>\d+)\))?: ")


def latest(decisions: list[Decision]) -> dict[str, Decision]:
    newest: dict[str, Decision] = {}
    for decision in decisions:
        held = newest.get(decision.server_id)
        if held is None or decision.version > held.version:
            newest[decision.server_id] = decision
    return newest


@dataclass
class DecisionAudit:
    """Decisions on the topic: `lost` versions missing from a server's 1..n, `duplicated` extra
    copies of a (server, version), `conflicting` versions published with different contents. The
    event time a decision was taken at is no content: a batch read again may end at a later event
    and decide the same."""

    decisions: int
    servers: int
    lost: int
    duplicated: int
    conflicting: int


def audit_decisions(decisions: list[Decision]) -> DecisionAudit:
    copies: dict[tuple[str, int], list[Decision]] = defaultdict(list)
    for decision in decisions:
        copies[(decision.server_id, decision.version)].append(decision)
    newest = latest(decisions)
    versions = Counter(server for server, _ in copies)
    return DecisionAudit(
        decisions=len(decisions), servers=len(newest),
        lost=sum(d.version - versions[server] for server, d in newest.items()),
        duplicated=sum(len(same) - 1 for same in copies.values()),
        conflicting=sum(1 for same in copies.values()
                        if any(replace(d, decided_at=same[0].decided_at) != same[0] for d in same)),
    )


@dataclass
class Offline:
    """What `patchgate evaluate`'s code makes of the files: each server's row as of its own newest
    event (what the stream's latest decision for it must say), every message, and the bad lines."""

    rows: dict[str, dict]
    messages: set[tuple[str, str]]
    errors: list[str]

    def bad_lines(self) -> Counter:
        """How many errors evaluate reported at each (file, line, byte); a line that came in an
        envelope is named by the file, line and byte the envelope gives (None where it gives none)."""
        found: Counter[tuple[str, int | None, int | None]] = Counter()
        for text in self.errors:
            match = EVALUATE_ERROR.match(text)
            if match:
                found[(match["source"], int(match["line"]) if match["line"] else None,
                       int(match["byte"]) if match["byte"] else None)] += 1
        return found


def offline(paths: list[Path], settings) -> Offline:
    errors = io.StringIO()
    observed, _ = read_observations([str(p) for p in paths], settings.policy, errors, datetime.now(UTC),
                                    keep_messages=True, formats=settings.formats)
    by_server = defaultdict(list)
    for observation in observed:
        by_server[observation.server_id].append(observation)
    catalog = load_catalog(settings.catalog_file)
    rows = {}
    for server_id, observations in by_server.items():
        [decision] = replay(observations, settings.policy, catalog, max(o.last_seen for o in observations))
        rows[server_id] = evaluate_row(decision)
    messages = {(o.server_id, key) for o in observed for key in o.message_keys}
    return Offline(rows, messages, errors.getvalue().splitlines())


def replay_mismatches(decisions: list[Decision], expected: Offline) -> list[str]:
    """Servers whose latest decision differs from the offline replay (or that only one side has)."""
    found = {server: evaluate_row(d) for server, d in latest(decisions).items()}
    differ = []
    for server in sorted(found.keys() | expected.rows.keys()):
        stream, replayed = found.get(server), expected.rows.get(server)
        if stream != replayed:
            if stream is None or replayed is None:
                differ.append(f"{server}: only {'offline' if stream is None else 'in the stream'}")
            else:
                keys = [k for k in stream if stream[k] != replayed[k]]
                differ.append(f"{server}: " + ", ".join(f"{k} {stream[k]!r} != {replayed[k]!r}" for k in keys))
    return differ


@dataclass
class RowAudit:
    """ClickHouse rows, read through the worker's web port: stored rows, distinct keys and rows read
    with FINAL, for `decisions` (key server, version) and `server_messages` (server, day, message)."""

    decisions: tuple[int, int, int]
    messages: tuple[int, int, int]
    decisions_missing: int = 0
    decisions_extra: int = 0
    messages_missing: int = 0
    messages_extra: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def duplicates_unmerged(self) -> int:
        return self.decisions[0] - self.decisions[1] + self.messages[0] - self.messages[1]


def audit_rows(pipeline: Pipeline, decisions: list[Decision], messages: set[tuple[str, str]]) -> RowAudit:
    [counts] = pipeline.sql(
        "SELECT (SELECT count() FROM decisions),"
        " (SELECT count() FROM (SELECT DISTINCT server_id, version FROM decisions)),"
        " (SELECT count() FROM decisions FINAL), (SELECT count() FROM server_messages),"
        " (SELECT count() FROM (SELECT DISTINCT server_id, day, message_key FROM server_messages)),"
        " (SELECT count() FROM server_messages FINAL)")
    stored_decisions = {(s, v) for s, v in pipeline.every_row("SELECT server_id, version FROM decisions FINAL")}
    stored_messages = {(s, k) for s, k in
                       pipeline.every_row("SELECT server_id, message_key FROM server_messages FINAL")}
    published = {(d.server_id, d.version) for d in decisions}
    audit = RowAudit(tuple(counts[:3]), tuple(counts[3:]),
                     decisions_missing=len(published - stored_decisions),
                     decisions_extra=len(stored_decisions - published),
                     messages_missing=len(messages - stored_messages), messages_extra=len(stored_messages - messages))
    if audit.decisions[2] != audit.decisions[1]:
        audit.problems.append(f"decisions read with FINAL {audit.decisions[2]} != distinct {audit.decisions[1]}")
    if audit.messages[2] != audit.messages[1]:
        audit.problems.append(f"server_messages read with FINAL {audit.messages[2]} != distinct {audit.messages[1]}")
    for what, count in (("decisions missing", audit.decisions_missing),
                        ("decisions not published", audit.decisions_extra),
                        ("messages not in the files", audit.messages_extra)):
        if count:
            audit.problems.append(f"{count} {what} in ClickHouse")
    if audit.messages_missing:
        audit.problems.append(_where_messages_went_missing(pipeline, messages - stored_messages))
    return audit


def _where_messages_went_missing(pipeline: Pipeline, missing: set[tuple[str, str]]) -> str:
    """Which step lost them: on mail.observations, the sink did; not there, the workers did."""
    published: set[tuple[str, str]] = set()
    for record in read_topic(pipeline.settings, topics.OBSERVATIONS):
        for observation in observations_from_record(SERVER_OBSERVATION.decode(record.value)):
            published.update((observation.server_id, key) for key in observation.message_keys)
    on_topic = missing & published
    return (f"{len(missing)} messages missing in ClickHouse, {len(on_topic)} of them on "
            f"{topics.OBSERVATIONS} (lost by the sink), {len(missing) - len(on_topic)} not (lost by the workers); "
            f"e.g. {sorted(missing)[:3]}")


@dataclass
class LineAudit:
    """The lines of each file on mail.logs.raw, by the line numbers their packed records carry."""

    lines: int
    lost: int
    duplicated: int


def audit_raw_lines(settings, expected_lines: dict[str, int]) -> LineAudit:
    """`expected_lines`: file identity (absolute path, the record key) -> its number of lines."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for record in read_topic(settings, topics.RAW):
        position = packing.packed_position(record.headers)
        if position is None or not record.value:
            continue  # a quiet marker, not lines
        count = record.value.count(b"\n") + (not record.value.endswith(b"\n"))
        seen[record.key.decode()].update(range(position[0], position[0] + count))
    lost = sum(sum(1 for n in range(1, total + 1) if n not in seen[path]) for path, total in expected_lines.items())
    duplicated = sum(c - 1 for counts in seen.values() for c in counts.values() if c > 1)
    return LineAudit(sum(len(c) for c in seen.values()), lost, duplicated)


def audit_one_line_records(settings, files: dict[str, list[bytes]]) -> LineAudit:
    """Lines sent one per record (kcat: the line without its \\n, keyed by the file's path) against
    `files`, file identity -> its lines: one-line records carry no line number, so they are
    counted by their text."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for record in read_topic(settings, topics.RAW):
        if record.key is not None and not record.headers:
            seen[record.key.decode()][record.value] += 1
    lost = duplicated = 0
    for path, lines in files.items():
        expected = Counter(line.removesuffix(b"\n") for line in lines)
        lost += (expected - seen[path]).total()
        duplicated += (seen[path] - expected).total()
    return LineAudit(sum(c.total() for c in seen.values()), lost, duplicated)


def check_line_shipper(result: Result, shipper: Process, settings, files: dict[str, list[bytes]]) -> LineAudit:
    """Stop the one-line shipper (bench/kcat_follow.py) once it had time to read the files' ends,
    and check every line is on mail.logs.raw once."""
    time.sleep(2.0)
    status = stop_gracefully(shipper, timeout=120)
    result.expect(status == 0, f"the one-line shipper ended with status {status}:\n{shipper.tail()}")
    audit = audit_one_line_records(settings, files)
    result.expect(audit.lost == 0 and audit.duplicated == 0,
                  f"one-line records on mail.logs.raw: {audit.lost} lines lost, {audit.duplicated} repeated")
    return audit


def dead_letters(settings) -> list[dict]:
    return [DEAD_LETTER.decode(record.value) for record in read_topic(settings, topics.DEAD_LETTERS)]


@dataclass
class Result:
    """One row of the table: the fault, its figures (name -> value, in order) and what did not hold."""

    fault: str
    figures: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def holds(self) -> bool:
        return not self.failures

    def expect(self, holds: bool, failure: str) -> bool:
        if not holds:
            self.failures.append(failure)
        return holds

    def describe(self) -> str:
        figures = ", ".join(f"{name} {value}" for name, value in self.figures.items())
        return f"{self.fault} ({self.seconds:.0f} s): {figures}" + "".join(f"\n  FAILED: {f}" for f in self.failures)


def scenario(fault: str):
    """Make `run(result, ...)` a scenario that returns its Result, timed; an exception ends it as a failure
    with the figures found so far."""
    def wrap(run):
        @functools.wraps(run)
        def measured(*args, **kwargs) -> Result:
            result = Result(fault)
            started = time.monotonic()
            try:
                run(result, *args, **kwargs)
            except Exception as exc:  # whatever stopped it is the finding
                result.failures.append(f"stopped by {type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - started
            return result
        return measured
    return wrap


def check_shipper(result: Result, shipper: Process, lines: int) -> None:
    """Ask the following shipper to stop (it ships what it has read first) and check it sent every line."""
    status = stop_gracefully(shipper, timeout=120)
    shipped = re.findall(r"shipped (\d+) lines", shipper.text())
    result.expect(status == 0, f"the shipper ended with status {status}:\n{shipper.tail()}")
    result.expect(shipped == [str(lines)], f"the shipper sent {shipped or 'no count of'} lines of {lines}")


def audit_outcome(result: Result, pipeline: Pipeline, paths: list[Path], repeats_allowed: bool = False) -> None:
    """Decisions (none lost or conflicting, and none published twice unless `repeats_allowed`: the
    same decision again after a batch was read again; the latest equal to an offline replay) and
    ClickHouse rows (each once, read with FINAL; unmerged copies are a figure). The worker must be
    running and drained: ClickHouse is read through its web port."""
    decisions = read_decisions(pipeline.settings)
    audit = audit_decisions(decisions)
    expected = offline(paths, pipeline.settings)
    differ = replay_mismatches(decisions, expected)
    rows = audit_rows(pipeline, decisions, expected.messages)
    result.figures.update({
        "decisions": f"{audit.decisions:,} of {audit.servers} servers",
        "lost": audit.lost, "duplicated": audit.duplicated, "conflicting": audit.conflicting,
        "replay mismatches": len(differ),
        "decision rows stored/distinct/FINAL": "/".join(f"{n:,}" for n in rows.decisions),
        "message rows stored/distinct/FINAL/expected":
            "/".join(f"{n:,}" for n in (*rows.messages, len(expected.messages))),
        "unmerged duplicate rows": rows.duplicates_unmerged,
    })
    result.expect(audit.decisions > 0, "no decisions at all")
    result.expect(audit.lost == 0, f"{audit.lost} decision versions lost")
    result.expect(repeats_allowed or audit.duplicated == 0, f"{audit.duplicated} decisions published more than once")
    result.expect(audit.conflicting == 0, f"{audit.conflicting} versions published with different contents")
    result.expect(not differ, f"{len(differ)} servers differ from the offline replay, e.g. {differ[:3]}")
    result.expect(not rows.problems, "; ".join(rows.problems))
