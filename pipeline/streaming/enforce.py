"""One batch of the enforce agent: records of mail.observations and mail.control.applied become
decisions on mail.decisions, a server state each in the server-state table.

`add` each record, then `decide`, then `flush`. `add` dead-letters what does not decode (counted
against the agent's DeadLetterLimit) and the servers a record holds that belong to another
partition; the newest outcome of each partition's mail.control.applied records is kept. `decide`
first finishes what a previous owner of a partition left in its outbox, or left unpublished in a
server's state (see streaming.outbox), then folds each server's observations into its state under
the controls in force in its partition, and decides. A change of the controls in force decides
every server of the partition again, with no observation of its own.

`flush` keeps the order that loses nothing: the dead letters are acknowledged; then the new
decisions, each with its server's state, are written to the outbox with the controls in force and
acknowledged; then each changed state is written and the decisions are published, both at once,
and acknowledged; then the outbox is emptied.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

import faust

from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT_DECISION, SERVER_OBSERVATION_TIMES
from pipeline.contracts.control import CONTROL_APPLIED, controls_from_applied
from pipeline.contracts.topics import partition_for
from pipeline.domain import policy
from pipeline.domain.catalog import Catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.control import Controls
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import ServerState
from pipeline.settings import Settings
from pipeline.streaming.controls import CONTROLS_KEY, decode_controls, encode_controls
from pipeline.streaming.dead_letters import DeadLetterLimit, dead_letter, decoded
from pipeline.streaming.outbox import (
    OUTBOX,
    Record,
    StoredServer,
    not_yet_published,
    outbox_entries,
    outbox_key,
    outbox_values,
    tails,
)
from pipeline.streaming.tables import TableBatch, flushed

log = logging.getLogger(__name__)


class EnforceBatch:
    """One batch of the enforce agent (see the module docstring). `stages` counts its new decisions
    by stage and `bad` its records that were dead-lettered, for the metrics."""

    def __init__(self, server_states: faust.Table, controls_in_force: faust.Table, decisions: faust.TopicT,
                 dead_letters: faust.TopicT, applied_topic: str, settings: Settings, catalog: Catalog,
                 limit: DeadLetterLimit):
        self.server_states, self.controls_in_force = server_states, controls_in_force
        self.decisions, self.dead_letters, self.applied_topic = decisions, dead_letters, applied_topic
        self.settings, self.catalog, self.limit = settings, catalog, limit
        self.bad = 0
        self.stages: Counter[int] = Counter()
        # Delivery futures of the dead letters, acknowledged before anything is written.
        self._pending: list = []
        self._states = TableBatch(server_states, decode=StoredServer.decode, encode=StoredServer.encode)
        self._outbox = TableBatch(server_states, decode=bytes, encode=bytes)
        # Per partition: each holds the same key (TableBatch keeps one value per key).
        self._in_force: dict[int, TableBatch] = {}
        self._newest_controls: dict[int, tuple[faust.EventT, dict]] = {}
        self._by_server: dict[bytes, tuple[faust.EventT, list[ServerObservation]]] = {}
        # The batch's last event per partition: the outboxes of its partitions are read in them.
        self._last_events: dict[int, faust.EventT] = {}
        self._decided: dict[int, tuple[faust.EventT, list[tuple[ServerState, Record]]]] = {}

    async def add(self, event: faust.EventT) -> None:
        self._last_events[event.message.partition] = event
        if event.message.topic == self.applied_topic:
            applied = await decoded(self.dead_letters, event, CONTROL_APPLIED, dict, self._pending, self.limit)
            if applied is not None:
                self._newest_controls[event.message.partition] = (event, applied)
            return
        observations = await decoded(self.dead_letters, event, SERVER_OBSERVATION_TIMES,
                                     records.observations_from_record, self._pending, self.limit)
        if observations is None:
            self.bad += 1
            return
        misplaced = set()
        for observation in observations:
            key = observation.server_id.encode("utf-8")
            if partition_for(key, self.settings.partitions) == event.message.partition:
                self._by_server.setdefault(key, (event, []))[1].append(observation)
            else:
                misplaced.add(observation.server_id)
        if misplaced:
            # Its state is another partition's: applied here, the server would have two.
            self._pending.append(await dead_letter(self.dead_letters, event, (
                f"observations of {len(misplaced)} servers whose keys belong to other partitions than "
                f"{event.message.partition}, not applied: {', '.join(sorted(misplaced)[:5])}")))
            self.bad += 1

    async def decide(self) -> None:
        """Decide every server of the batch (see the module docstring); nothing new is written or
        published until `flush`."""
        states, by_server = self._states, self._by_server
        await self._publish_left_in_outbox()
        for partition, (event, applied) in self._newest_controls.items():
            controls = controls_from_applied(applied)
            here = self._in_force[partition] = TableBatch(self.controls_in_force, decode=decode_controls,
                                                          encode=encode_controls)
            if controls != here.get(CONTROLS_KEY, event):
                here.put(CONTROLS_KEY, controls, event)
                # The partition's servers are decided again under what is now in force.
                for key, _ in states.scan(b"", event, skip=OUTBOX):
                    by_server.setdefault(key, (event, []))
        configs: dict[int, PolicyConfig] = {}
        stored = {key: states.get(key, event) for key, (event, _) in by_server.items()}
        left_over = [record for server in stored.values() if server for record in server.unpublished]
        if left_over:
            await self._publish(not_yet_published(left_over, await tails(
                self.settings, self.decisions.get_topic_name(), left_over)))
        for key, (event, observations) in by_server.items():
            state = stored[key].state if stored[key] else None
            partition = event.message.partition
            if partition not in configs:
                here = self._in_force.setdefault(partition, TableBatch(self.controls_in_force,
                                                                       decode=decode_controls))
                configs[partition] = (here.get(CONTROLS_KEY, event) or Controls()).in_force(self.settings.policy)
            in_force_here = configs[partition]
            for observation in observations:
                state = policy.observe(state, observation, in_force_here, self.catalog)
            assert state is not None  # a server in the batch has an observation or a stored state
            state, decision = policy.decide(state, in_force_here, self.catalog)
            if decision is not None:
                record = (key, ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
                self._decided.setdefault(partition, (event, []))[1].append((state, record))
                self.stages[decision.stage] += 1
            states.put(key, StoredServer(state), event)

    async def flush(self) -> None:
        """Write and publish what `decide` decided, in the order of the module docstring."""
        outbox = self._outbox
        await asyncio.gather(*self._pending)
        # The new decisions, with their states, are in the outbox before any goes out or any
        # state is stored: the broker has both or neither of a server's state and decision.
        written = []
        for partition, (event, new) in self._decided.items():
            for n, value in enumerate(outbox_values(new)):
                # The partition in the key too: a TableBatch holds one value per key.
                written.append((event, outbox_key(partition, n)))
                outbox.put(outbox_key(partition, n), value, event)
        await asyncio.gather(*await flushed(outbox, *self._in_force.values()))
        sent = await flushed(self._states)
        await asyncio.gather(*sent, self._publish([record for _, new in self._decided.values() for _, record in new]))
        for event, key in written:
            outbox.delete(key, event)
        await asyncio.gather(*await flushed(outbox))

    async def _publish_left_in_outbox(self) -> None:
        """What a batch of the partitions' previous owner left in their outbox: its states stored,
        the decisions mail.decisions does not end with published, then the outbox emptied."""
        states, outbox = self._states, self._outbox
        left: list[Record] = []
        for partition, event in self._last_events.items():
            for key, value in outbox.scan(outbox_key(partition), event):
                for state, record in outbox_entries(value):
                    states.put(record[0], StoredServer(state), event)
                    left.append(record)
                outbox.delete(key, event)
        if not left:
            return
        log.warning("publishing %d decisions a stopped worker left in the outbox, unless already published", len(left))
        sent = await flushed(states)
        missing = not_yet_published(left, await tails(self.settings, self.decisions.get_topic_name(), left))
        await asyncio.gather(*sent, self._publish(missing))
        await asyncio.gather(*await flushed(outbox))

    async def _publish(self, decided: list[Record]) -> None:
        await asyncio.gather(*[await self.decisions.send(key=key, value=value) for key, value in decided])
