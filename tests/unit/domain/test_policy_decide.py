"""`decide` publishes only when something changed: so after any sequence of `step` calls, the last
decision it published says what a fresh `assess` at the newest event says. A skipped decision
that should have been taken (a stage, pause or exemption edge crossed between two observations)
breaks it."""
from dataclasses import fields, replace
from datetime import date, timedelta

from hypothesis import example, given, settings, strategies as st

from pipeline.domain.config import Exemption, Pause, PolicyConfig
from pipeline.domain.policy import Decision, assess
from tests.unit.conftest import CATALOG, SERVER, T0, run, seen

ORG = "contoso.example"
BUILDS = ("15.1.2507.6", "15.0.1497.2", "15.2.1748.10", "15.2.1544.4", None)
# What a published decision must agree on with a fresh one (its number and time are its own).
_CONTENT = tuple(f.name for f in fields(Decision) if f.name not in ("version", "decided_at"))

pauses = st.lists(st.builds(Pause, st.just(ORG), st.dates(date(2026, 1, 1), date(2026, 6, 30)), st.integers(1, 20)),
                  max_size=3)
exemptions = st.lists(st.builds(Exemption, st.sampled_from([SERVER, "*.contoso.example", "other.example"]),
                                st.dates(date(2026, 1, 1), date(2026, 6, 30)), st.just("change freeze")),
                      max_size=2)
sightings = st.lists(st.tuples(st.integers(0, 200 * 24), st.sampled_from(BUILDS)), min_size=1, max_size=25)


@settings(max_examples=120, deadline=None)
@given(pauses=pauses, exemptions=exemptions, sightings=sightings, ordered=st.booleans())
# A pause that starts between two sightings and no stage between them: the second one is paused.
@example(pauses=[Pause(ORG, date(2026, 3, 1), 1)], exemptions=[],
         sightings=[(0, "15.0.1497.2"), (51 * 24 + 1, "15.0.1497.2"), (55 * 24 + 3, "15.0.1497.2")], ordered=True)
def test_the_last_published_decision_is_what_assess_says_at_the_newest_event(pauses, exemptions, sightings, ordered):
    config = replace(PolicyConfig(), pauses=tuple(pauses), granted_exemptions=tuple(exemptions))
    if ordered:
        sightings = sorted(sightings, key=lambda sighting: sighting[0])
    observations = [seen(build, T0 + timedelta(hours=hours), SERVER, ORG) for hours, build in sightings]
    state, decisions = run(observations, config)
    assert state is not None and decisions
    published = decisions[-1]
    newest = T0 + timedelta(hours=max(hours for hours, _ in sightings))
    fresh = assess(state, newest, config, CATALOG)
    assert [getattr(published, name) for name in _CONTENT] == [getattr(fresh, name) for name in _CONTENT]
