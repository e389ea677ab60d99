"""Fold the traces of a batch into server observations, before anything crosses Kafka.

Every trace names zero or more servers (identity.sightings). Sightings that agree on server,
build, evidence, software, relay and scope fold into one ServerObservation: how many, first and last
event time, and the messages they belong to. The policy only needs the first and the last time;
the traffic tables need the messages, which travel as compact parallel lists.
"""
from __future__ import annotations

from pipeline.domain import identity
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import (
    MessageTrace,
    ServerObservation,
    Sighting,
    TraceGroup,
    epoch_ms,
    from_epoch_ms,
    message_key,
)

# Messages per observation record: keeps a record far below Kafka's 1 MB message limit even with
# long Message-IDs; a busier key in one batch becomes several records.
MAX_MESSAGES_PER_OBSERVATION = 2_000


class _Fold:
    __slots__ = ("first", "last", "count", "keys", "times", "sizes")

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self.count = 0
        self.keys: list[str] = []
        self.times: list[int] = []
        self.sizes: list[int] = []

    def add(self, first: int, last: int, count: int, keys: list[str], times: list[int], sizes: list[int],
            keep_messages: bool) -> None:
        self.first = min(self.first, first)
        self.last = max(self.last, last)
        self.count += count
        if keep_messages:
            self.keys.extend(keys)
            self.times.extend(times)
            self.sizes.extend(sizes)


class ObservationBatch:
    """Collects traces and trace groups; `observations()` returns them folded.

    `until_ms`: traces after this event time are left out (`evaluate --at`). Without
    `keep_messages` only the counts and times are kept (all the policy needs).
    """

    def __init__(self, config: PolicyConfig, until_ms: int | None = None, keep_messages: bool = True):
        self._config = config
        self._until_ms = until_ms
        self._keep_messages = keep_messages
        self._known: dict[tuple, list[Sighting]] = {}
        self._folds: dict[Sighting, _Fold] = {}

    def add_trace(self, trace: MessageTrace) -> None:
        time_ms = epoch_ms(trace.event_time)
        if self._until_ms is not None and time_ms > self._until_ms:
            return
        found = self._sightings(trace)
        if not found:
            return
        times, keys = [time_ms], [message_key(trace.message_id, time_ms, trace.total_bytes)]
        sizes = [trace.total_bytes or 0]
        for sighting in found:
            self._add(sighting, time_ms, time_ms, 1, keys, times, sizes)

    def add_group(self, group: TraceGroup) -> None:
        """A group must hold no trace after `until_ms` (TrackingRows leaves those out itself)."""
        last = epoch_ms(group.template.event_time)
        for sighting in self._sightings(group.template):
            self._add(sighting, group.first_ms, last, group.count, group.message_keys, group.times_ms, group.sizes)

    def observations(self) -> list[ServerObservation]:
        """Sorted by server and first event time; at most MAX_MESSAGES_PER_OBSERVATION messages each."""
        out = []
        for sighting, fold in self._folds.items():
            if not self._keep_messages:
                out.append(_observation(sighting, fold.first, fold.last, fold.count, [], [], []))
                continue
            messages = len(fold.keys)
            for start in range(0, messages, MAX_MESSAGES_PER_OBSERVATION):
                end = start + MAX_MESSAGES_PER_OBSERVATION
                times = fold.times[start:end]
                if start == 0:
                    # The first record spans all the sightings (a message's time is its newest
                    # sighting's, so its times alone may start late) and counts those beyond its messages.
                    first, last, count = fold.first, fold.last, len(times) + fold.count - messages
                else:
                    first, last, count = min(times), max(times), len(times)
                out.append(_observation(sighting, first, last, count, fold.keys[start:end], times,
                                        fold.sizes[start:end]))
        out.sort(key=lambda o: (o.server_id, o.first_seen, o.last_seen))
        return out

    def _sightings(self, trace: MessageTrace) -> list[Sighting]:
        key = identity.identity_key(trace)
        if key is None:
            return identity.sightings(trace, self._config)
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = identity.sightings(trace, self._config)
        return found

    def _add(self, sighting: Sighting, first: int, last: int, count: int, keys: list[str], times: list[int],
             sizes: list[int]) -> None:
        fold = self._folds.get(sighting)
        if fold is None:
            fold = self._folds[sighting] = _Fold(first, last)
        fold.add(first, last, count, keys, times, sizes, self._keep_messages)


def _observation(sighting: Sighting, first_ms: int, last_ms: int, count: int, keys: list[str], times: list[int],
                 sizes: list[int]) -> ServerObservation:
    return ServerObservation(
        server_id=sighting.server_id, server=sighting.server, org=sighting.org, build=sighting.build,
        evidence=sighting.evidence, first_seen=from_epoch_ms(first_ms), last_seen=from_epoch_ms(last_ms), count=count,
        behind_relay=sighting.behind_relay, software=sighting.software,
        message_keys=keys, message_times_ms=times, message_sizes=sizes, in_scope=sighting.in_scope,
    )
