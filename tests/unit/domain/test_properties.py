"""Property-based tests: no input line crashes a parser; how input is cut into runs and batches
changes nothing; stage never goes down while vulnerable."""
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pipeline.catalog_files import load_catalog
from pipeline.domain.aggregate import ObservationBatch
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, ParseError, ServerObservation
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers import dispatch
from pipeline.domain.parsers.msgtrk_rows import TrackingRows
from pipeline.domain.policy import step
from pipeline.files import chunks

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
REFERENCE = datetime(2026, 11, 27, tzinfo=UTC)

PREFIXES = st.sampled_from([
    "", "#Fields: date-time,event-id\n", "Received: ", "From MAILER-DAEMON ", '"date_time_utc","client_ip"\n',
    "Feb 16 11:20:32 mx1 postfix/cleanup[1]: ABCDEF1: warning: header Received: ",
    "2026-02-20 08:14:01 1vDm9G-0000000F3wb-1R0u <= ", '{"message": "', "#TYPE x\n",
])


def feed_in_runs(lines: list[str], cuts: list[int], batch_every: int, config: PolicyConfig, source: str = "fuzz"):
    """Lines through the dispatcher as the stream feeds them: runs cut at `cuts`, a batch (one
    TrackingRows flush, one ObservationBatch) every `batch_every` runs, the end of the source last.
    Returns the observations of every batch and the errors."""
    out = _Output(config)
    sources = dispatch.Sources()
    bounds = [0] + sorted({c for c in cuts if 0 < c < len(lines)}) + [len(lines)]
    runs = list(itertools.pairwise(bounds))
    for first in range(0, len(runs), batch_every):
        rows = TrackingRows()
        for a, b in runs[first:first + batch_every]:
            # Packed, as `patchgate ship` sends lines (so the reader of tracking logs may take bytes as they are).
            data = "".join(line + "\n" for line in lines[a:b]).encode("utf-8")
            offset = sum(len(line.encode("utf-8")) + 1 for line in lines[:a])
            sources.parse(LineRun.packed(source, data, a + 1, offset, REFERENCE), out, rows)
        rows.flush(out)
        out.next_batch()
    sources.finish(out)
    out.next_batch()
    return out.observations, out.errors


class _Output:
    def __init__(self, config):
        self.config, self.observations, self.errors = config, [], []
        self.batch = ObservationBatch(config)

    def trace(self, trace):
        assert isinstance(trace, MessageTrace)
        self.batch.add_trace(trace)

    def group(self, group):
        self.batch.add_group(group)

    def error(self, error):
        assert isinstance(error, ParseError)
        self.errors.append(str(error))

    def next_batch(self):
        self.observations += self.batch.observations()
        self.batch = ObservationBatch(self.config)


def settled(observations):
    """What the tables end up with, however the observations were cut: per sighting the total
    count and first and last time; per (server, message) the newest time and the size."""
    totals: dict[tuple, tuple[int, datetime, datetime]] = {}
    messages: dict[tuple[str, str], tuple[int, int]] = {}
    for o in observations:
        key = (o.server_id, o.build, o.evidence, o.behind_relay, o.software)
        count, first, last = totals.get(key, (0, o.first_seen, o.last_seen))
        totals[key] = (count + o.count, min(first, o.first_seen), max(last, o.last_seen))
        for message, at, size in zip(o.message_keys, o.message_times_ms, o.message_sizes, strict=True):
            seen = messages.get((o.server_id, message), (at, size))
            messages[(o.server_id, message)] = max(seen, (at, size))
    return totals, messages


SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*") if p.is_file())
SAMPLE_CONFIG = PolicyConfig.from_mapping(
    {"trusted_receivers": ["*.outlook.com", "*.protection.outlook.com", "mx*.example.net"]})


@pytest.mark.parametrize("file", SAMPLE_FILES, ids=lambda p: p.name)
@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.floats(0, 1), max_size=8), batch_every=st.integers(1, 4))
def test_how_input_is_cut_into_runs_and_batches_changes_nothing(file, cuts, batch_every):
    """The stream cuts a source wherever records and batches end, evaluate by chunks: the tables
    and the policy must end up the same."""
    with file.open("rb") as handle:  # compressed and UTF-16 samples too, as evaluate reads them
        lines = b"".join(chunk.data for chunk in chunks(handle)).decode("utf-8").splitlines()
    whole, whole_errors = feed_in_runs(lines, [], 1, SAMPLE_CONFIG)
    cut, cut_errors = feed_in_runs(lines, [int(c * len(lines)) for c in cuts], batch_every, SAMPLE_CONFIG)
    assert settled(cut) == settled(whole)
    assert sorted(cut_errors) == sorted(whole_errors)


@settings(max_examples=400, deadline=None)
@given(prefix=PREFIXES, lines=st.lists(st.text(max_size=200), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 8), max_size=3))
def test_no_line_crashes_any_parser(prefix, lines, cuts):
    text = (prefix + "\n".join(lines)).split("\n")
    feed_in_runs(text, cuts, 2, PolicyConfig())


VULNERABLE_BUILDS = st.sampled_from(["15.0.1497.2", "15.1.2507.39", "14.3.513.0", "15.2.1544.14", None])
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 200 * 24), VULNERABLE_BUILDS), min_size=1, max_size=40))
def test_stage_never_decreases_while_a_server_stays_vulnerable_and_unpaused(events):
    state, last_stage = None, 0
    for hours, build in events:
        observation = ServerObservation.once("s.example", "s.example", None, T0 + timedelta(hours=hours), build,
                                             "received-id")
        state, decision = step(state, observation, PolicyConfig(), load_catalog())
        if decision is not None:
            assert decision.status in ("unsupported", "outdated", "unknown")
            assert decision.stage >= last_stage
            last_stage = decision.stage
