from pathlib import Path

import pytest

from pipeline.domain.events import SourcePosition

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def _feed(module, lines, source="sample", **kwargs):
    """Run a parser module over lines like the dispatcher does; return (traces, errors, state)."""
    state, traces, errors = module.initial_state(), [], []
    for number, line in enumerate(lines, start=1):
        state, results = module.parse_line(state, line, SourcePosition(source, number), **kwargs)
        for result in results:
            (errors if result.__class__.__name__ == "ParseError" else traces).append(result)
    return traces, errors, state


@pytest.fixture
def samples():
    return SAMPLES


@pytest.fixture
def feed():
    return _feed
