"""Property-based tests: no input line crashes a parser; stage never goes down while vulnerable."""
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, ParseError, ServerObservation, SourcePosition
from pipeline.domain.parsers import dispatch, envelope
from pipeline.domain.policy import step

PREFIXES = st.sampled_from([
    "", "#Fields: date-time,event-id\n", "Received: ", "From MAILER-DAEMON ", '"date_time_utc","client_ip"\n',
    "Feb 16 11:20:32 mx1 postfix/cleanup[1]: ABCDEF1: warning: header Received: ",
    "2026-02-20 08:14:01 1vDm9G-0000000F3wb-1R0u <= ", '{"message": "', "#TYPE x\n",
])


@settings(max_examples=400, deadline=None)
@given(prefix=PREFIXES, lines=st.lists(st.text(max_size=200), min_size=1, max_size=6))
def test_no_line_crashes_any_parser(prefix, lines):
    state = None
    text = (prefix + "\n".join(lines)).split("\n")
    for number, line in enumerate(text, start=1):
        unwrapped = envelope.unwrap(line, SourcePosition("fuzz", number))
        if isinstance(unwrapped, ParseError):
            continue
        line, position = unwrapped
        state, results = dispatch.parse_line(state, line, position, datetime(2026, 11, 27, tzinfo=timezone.utc))
        assert all(isinstance(r, (MessageTrace, ParseError)) for r in results)
    _, results = dispatch.finish(state, SourcePosition("fuzz", len(text)))
    assert all(isinstance(r, (MessageTrace, ParseError)) for r in results)


VULNERABLE_BUILDS = st.sampled_from(["15.0.1497.2", "15.1.2507.39", "14.3.513.0", "15.2.1544.14", None])
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 200 * 24), VULNERABLE_BUILDS), min_size=1, max_size=40))
def test_stage_never_decreases_while_a_server_stays_vulnerable_and_unpaused(events):
    state, last_stage = None, 0
    for hours, build in events:
        observation = ServerObservation("s.example", "s.example", None, T0 + timedelta(hours=hours), build, "received-id")
        state, decision = step(state, observation, PolicyConfig(), load_catalog())
        if decision is not None:
            assert decision.status in ("unsupported", "outdated", "unknown")
            assert decision.stage >= last_stage
            last_stage = decision.stage
