"""Faust's Kafka transport with two guards: a record fetched before a seek back is not delivered, and
on a topic without holes no record is lost for want of an ack.

At a rebalance Faust resumes the partitions it keeps and only then seeks them to the committed
offsets (faust-streaming #216, #221). A record fetched in between, from further on, reached the
agent before the records the seek went back for: Faust then counted the offsets it skipped as a gap
and acked them, and dropped the re-fetched records as already read. A restarted worker thereby
committed records it never processed (the fault campaign lost 2 to 8 messages in some kill -9 and
full-disk runs).

The consumer's own position tells such records apart: each record handed out moves it past the
record, and only a seek moves it back. A record at or beyond the position was fetched before a seek,
and Kafka hands it out again once the fetch reaches it, in order.

A seek can also land while a record is with the agent: Faust's drain loop then records that record
as the last one read, over the offset the seek set, and drops every re-fetched record below it as
already read. Those were never acked, so the commit stalled there for good (three workers left 31
records uncommitted after a rebalance). The guard puts the seek's offset back before the loop reads on.

On the pipeline's topics that are not compacted every offset holds a record (no compaction, no
transaction markers), so there a record that is not acked while records after it are was dropped,
not skipped over:
- Faust commits when the acked offsets start one past the committed one, as if that record were a
  hole (faust-streaming #606). A stream skips, unacked, what it takes while a rebalance suspends the
  flow or from a generation gone: in the scale-out fault run a worker so committed mail.logs.raw/8
  at 211, then at 249, and record 211, 9 messages, was parsed by no worker.
- Faust's getmany throws away the rest of a fetch when the flow stops, the generation changes or the
  partition is paused, after the position has moved past it; its drain loop then counts the offsets
  it never delivered as a gap, acked.
- aiokafka seeks only the partitions with a committed offset above 0: a new partition keeps the
  position it had when Faust threw its first records away.
On those topics the commit therefore stops at the first record not acked (the committed offset,
past offsets deleted before they were read), and once it has waited REREAD_AFTER_S with records
after it acked, the partition is read again from it. Records already acked on the way are not
handed out twice.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger(__name__)

# How long the first record not acked may wait while records after it are acked before the partition
# is read again from it. An agent acks a partition's records in order, so this is no processing time:
# it only has to outlast a rebalance's acks of records in hand, a few commit intervals.
REREAD_AFTER_S = 10.0


def fetched_before_seek(offset: int, position: int | None) -> bool:
    """Whether a record in hand lies at or past the partition's fetch position, or the position is
    being reset: either way the fetch starts again at or before it."""
    return position is None or offset >= position


def first_unacked(committed: int | None, gap: Any) -> int:
    """The first offset a partition without holes still owes an ack for: the committed one (0 when
    there is none), past the offsets known to be deleted before they were read."""
    offset = committed or 0
    while gap and (covering := gap.at(offset)):
        offset = max(interval.end for interval in covering)
    return offset


class InOrderConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, holding back records that a seek made stale, and reading a topic
    without holes again from a record that was dropped instead of committing past it."""

    clock: Callable[[], float] = time.monotonic

    def on_init(self) -> None:
        super().on_init()
        # Per partition of a topic without holes, since it was sought to its committed offset: the
        # first record not acked behind acked ones, and since when; then the rereads due.
        self._sought: set[TP] = set()
        self._waiting: dict[TP, tuple[int, float]] = {}
        self._rereads: dict[TP, int] = {}

    @property
    def _gapless(self) -> frozenset[str]:
        return getattr(self.app, "gapless_topics", frozenset())

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 (Faust's signature)
        await self._reread_dropped()
        held_back: dict[TP, int] = {}
        gapless = self._gapless
        async for tp, message in super().getmany(timeout):
            if fetched_before_seek(message.offset, self._fetch_position(tp)):
                held_back[tp] = held_back.get(tp, 0) + 1
                continue
            if tp.topic in gapless and message.offset in self._acked_index.get(tp, ()):
                continue  # read again from a dropped record, past this one already acked
            yield tp, message
            if fetched_before_seek(message.offset, position := self._fetch_position(tp)):
                # Sought back while the agent had the record: the drain loop's read offset is stale.
                self._read_offset[tp] = position
        if held_back:
            log.info("held back %s records fetched before a seek; they are fetched again in order",
                     ", ".join(f"{count} of {tp.topic}/{tp.partition}" for tp, count in sorted(held_back.items())))

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        self._sought.update(tp for tp in committed if tp.topic in self._gapless)
        return committed

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._sought.discard(tp)
            self._waiting.pop(tp, None)
            self._rereads.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Offsets the drain loop skipped on a topic without holes were thrown away with a fetch, not
        # empty: they stay owed, and the commit waits for them.
        if tp.topic not in self._gapless:
            await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked.get(tp)
        if acked and tp in self._sought:
            owed = first_unacked(self._committed_offset.get(tp), self._gap.get(tp))
            if min(acked) > owed:
                self._wait_for(tp, owed)
                return None
            self._waiting.pop(tp, None)
        return super()._new_offset(tp)

    def _wait_for(self, tp: TP, offset: int) -> None:
        now = self.clock()
        waiting_at, since = self._waiting.get(tp, (None, now))
        if waiting_at != offset:
            log.warning("%s/%s: record %d is not acked and records after it are: not committing past it",
                        tp.topic, tp.partition, offset)
            self._waiting[tp] = (offset, now)
        elif now - since >= REREAD_AFTER_S:
            self._rereads[tp] = offset
            self._waiting[tp] = (offset, now)

    async def _reread_dropped(self) -> None:
        while self._rereads:
            tp, offset = self._rereads.popitem()
            try:
                log_start = (await self.earliest_offsets(tp)).get(tp)
            except Exception as exc:  # the broker unreachable: the next wait asks again
                log.info("%s/%s: log start unknown (%s)", tp.topic, tp.partition, exc)
                continue
            if log_start is not None and offset < log_start:
                log.warning("%s/%s: offsets %d to %d were deleted before they were read; committing past them",
                            tp.topic, tp.partition, offset, log_start - 1)
                self._gap[tp].addi(offset, log_start)
                continue
            log.warning("%s/%s: record %d was dropped unacked; reading the partition again from it",
                        tp.topic, tp.partition, offset)
            try:
                await self.seek(tp, offset)
            except IllegalStateError:
                pass  # no longer assigned here: its new holder reads from the committed offset

    def _fetch_position(self, tp: TP) -> int | None:
        # The aiokafka consumer runs on Faust's consumer thread; an int read across threads is safe.
        client: Any = self._thread._consumer
        subscription = client._subscription.subscription if client is not None else None
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        # One read of the field: the consumer thread may reset it between a test and a second read.
        position = state._position if state is not None else None
        return None if position is None else int(position)


class InOrderTransport(faust_aiokafka.Transport):
    Consumer = InOrderConsumer
