from datetime import datetime
from pathlib import Path

import pytest

from pipeline.domain.config import FormatConfig
from pipeline.domain.events import SourcePosition
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers import dispatch
from pipeline.domain.parsers.msgtrk_rows import TrackingRows
from pipeline.domain.parsers.postfix import MemoryOpenMessages

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


class Collected:
    """What parsers hand to their ParseOutput, kept in lists."""

    def __init__(self):
        self.traces, self.groups, self.errors = [], [], []

    def trace(self, trace):
        self.traces.append(trace)

    def group(self, group):
        self.groups.append(group)

    def error(self, error):
        self.errors.append(error)


class Source:
    """One source fed through the dispatcher as the stream and evaluate feed it: runs of lines,
    a batch at a time, with its state and open messages kept between runs."""

    def __init__(self, name="sample", reference: datetime | None = None, formats: FormatConfig = FormatConfig()):
        self.name, self.reference, self.formats = name, reference, formats
        self.state: dispatch.SourceState | None = None
        self.open_messages, self.out = MemoryOpenMessages(), Collected()
        self.lines = 0

    def feed(self, lines: list[str]) -> "Source":
        positions = [SourcePosition(self.name, self.lines + i) for i in range(1, len(lines) + 1)]
        self.lines += len(lines)
        rows = TrackingRows()
        self.state = dispatch.parse_run(self.state, LineRun.of_lines(self.name, list(lines), positions, self.reference),
                                        self.out, self.open_messages, rows, self.formats)
        rows.flush(self.out)
        return self

    def finish(self) -> "Source":
        self.state = dispatch.finish(self.state, self.name, self.out, self.open_messages)
        return self


def _feed(lines, source="sample", reference=None):
    """Feed lines as one run; return (traces, errors, parser state of the detected format)."""
    fed = Source(source, reference).feed(lines)
    return fed.out.traces, fed.out.errors, fed.state.parser


@pytest.fixture
def samples():
    return SAMPLES


@pytest.fixture
def feed():
    return _feed


@pytest.fixture
def make_source():
    return Source
