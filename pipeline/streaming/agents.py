"""The processing agents: parse, observe, enforce. Every rule they apply lives in pipeline.domain."""
from __future__ import annotations

from datetime import datetime, timezone

import faust

from pipeline.domain import identity, policy
from pipeline.domain.catalog import Catalog
from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.parsers import dispatch, envelope
from pipeline.settings import Settings
from pipeline.streaming import records
from pipeline.streaming.avro import ENFORCEMENT_DECISION, MESSAGE_TRACE, SERVER_OBSERVATION
from pipeline.streaming.dead_letters import dead_letter, decoded


def register(app: faust.App, topics, parser_states: faust.Table, server_states: faust.Table,
             settings: Settings, catalog: Catalog) -> None:

    @app.agent(topics.raw)
    async def parse(stream):
        async for event in stream.events():
            message = event.message
            key = (message.key or b"").decode("utf-8", "replace") or f"{message.topic}/{message.partition}"
            unwrapped = envelope.unwrap(message.value or b"", SourcePosition(key))
            if isinstance(unwrapped, ParseError):
                await dead_letter(topics.dead_letters, event, unwrapped.reason, unwrapped)
                continue
            line, position = unwrapped
            source = position.source.encode("utf-8")
            # Syslog lines carry no year: the time the shipper produced the record supplies it.
            reference = datetime.fromtimestamp(message.timestamp, tz=timezone.utc) if message.timestamp else None
            previous = parser_states.get(source)
            state, results = dispatch.parse_line(previous, line, position, reference)
            if state != previous:
                # Most data lines leave the state as it was: skip the store write and changelog record.
                parser_states[source] = state
            for result in results:
                if isinstance(result, ParseError):
                    await dead_letter(topics.dead_letters, event, result.reason, result)
                else:
                    await topics.traces.send(key=source, value=MESSAGE_TRACE.encode(records.trace_record(result)))

    @app.agent(topics.traces)
    async def observe(stream):
        async for event in stream.events():
            trace = await decoded(topics.dead_letters, event, MESSAGE_TRACE, records.trace_from_record)
            if trace is None:
                continue
            for observation in identity.observations(trace, settings.policy):
                await topics.observations.send(
                    key=observation.server_id.encode("utf-8"),
                    value=SERVER_OBSERVATION.encode(records.observation_record(observation)),
                )

    @app.agent(topics.observations)
    async def enforce(stream):
        async for event in stream.events():
            observation = await decoded(topics.dead_letters, event, SERVER_OBSERVATION, records.observation_from_record)
            if observation is None:
                continue
            key = observation.server_id.encode("utf-8")
            stored = server_states.get(key)
            state = policy.ServerState.from_json(stored) if stored else None
            new_state, decision = policy.step(state, observation, settings.policy, catalog)
            # Assigned back on every change: a Faust table only logs what is set, not what is mutated.
            server_states[key] = new_state.to_json()
            if decision is not None:
                await topics.decisions.send(key=key, value=ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
