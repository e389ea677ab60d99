"""Faust's Kafka transport with two guards: a record fetched before a seek back is not delivered, and
no offset of a topic without holes is committed past a record not acked.

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

On the pipeline's topics that are not compacted every offset holds a record. Faust commits when the
acked offsets start one past the committed one, as if that record were a hole (faust-streaming
#606); but a record the stream dropped (it skips, unacked, what it takes while a rebalance suspends
the flow or from a generation gone) was so committed unread: in the scale-out fault run a worker
committed mail.logs.raw/8 at 211, then at 249, and record 211, 9 messages, was parsed by no worker.
On those topics the commit waits for such a record instead: it is read again at the next rebalance
or restart, which seek to the committed offset (at least once: the records after it come again too).
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger(__name__)


def fetched_before_seek(offset: int, position: int | None) -> bool:
    """Whether a record in hand lies at or past the partition's fetch position, or the position is
    being reset: either way the fetch starts again at or before it."""
    return position is None or offset >= position


class InOrderConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, holding back records that a seek made stale, and committing no
    further than the first record not acked."""

    def on_init(self) -> None:
        super().on_init()
        # Per partition: the committed offset whose record was found unacked behind acked ones.
        self._waiting_at: dict[TP, int] = {}

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 (Faust's signature)
        held_back: dict[TP, int] = {}
        async for tp, message in super().getmany(timeout):
            if fetched_before_seek(message.offset, self._fetch_position(tp)):
                held_back[tp] = held_back.get(tp, 0) + 1
                continue
            yield tp, message
            if fetched_before_seek(message.offset, position := self._fetch_position(tp)):
                # Sought back while the agent had the record: the drain loop's read offset is stale.
                self._read_offset[tp] = position
        if held_back:
            log.info("held back %s records fetched before a seek; they are fetched again in order",
                     ", ".join(f"{count} of {tp.topic}/{tp.partition}" for tp, count in sorted(held_back.items())))

    def _new_offset(self, tp: TP) -> int | None:
        committed = self._committed_offset.get(tp)
        acked = self._acked.get(tp)
        if committed is not None and acked and tp.topic in getattr(self.app, "gapless_topics", ()):
            gap = self._gap.get(tp)
            if min(acked) > committed and not (gap and gap.begin() <= committed):
                if self._waiting_at.get(tp) != committed:
                    self._waiting_at[tp] = committed
                    log.warning("%s/%s: record %d is not acked and records after it are: not committing past "
                                "it (it is read again at the next rebalance or restart)",
                                tp.topic, tp.partition, committed)
                return None
        return super()._new_offset(tp)

    def _fetch_position(self, tp: TP) -> int | None:
        # The aiokafka consumer runs on Faust's consumer thread; an int read across threads is safe.
        client: Any = self._thread._consumer
        subscription = client._subscription.subscription if client is not None else None
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None or not state.has_valid_position:
            return None
        return int(state.position)


class InOrderTransport(faust_aiokafka.Transport):
    Consumer = InOrderConsumer
