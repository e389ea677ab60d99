"""The repacker: the one reader of mail.logs.raw, in front of the worker.

Shippers send one line per record (Filebeat, Fluent Bit, Vector, rsyslog, kcat). A Faust event
costs about 150 µs whatever it holds, so the worker would pay that per line. The repacker reads
raw records thousands at a time with a plain aiokafka consumer and forwards each partition's run
of them as a few records on mail.logs.packed (raw partition p to packed partition p), each holding
up to 256 KiB of them with their keys, raw offsets and packed positions
(pipeline.contracts.packing.repack). The worker reads those, so a Faust event carries hundreds of
lines whatever shipper sent them.

Nothing is lost: the raw offsets are committed only once the broker acknowledged every repacked
record made of them (acks=all). Nothing is applied twice: after a crash the records since the last
commit are repacked again, possibly cut elsewhere, and the worker recognises lines it applied by
their raw offsets (a source's state keeps the raw offset it has read up to).
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from pipeline import kafka_clients
from pipeline.contracts import packing, records, topics
from pipeline.contracts.avro import DEAD_LETTER
from pipeline.domain.events import SourcePosition
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# Raw records taken per fetch: enough that a repacked record fills up even when many files share a
# partition, few enough that a fetch is repacked and acknowledged within a second.
FETCH_RECORDS = 20_000
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 5.0
# The producer's request limit, and the largest raw record forwarded, with room for the headers of
# the repacked record around it. A larger one (a binary file sent as one line by a shipper whose
# limits were raised) would be refused by every send, the same one again after each restart: it
# becomes a dead letter here, with the start of its value, and the records after it go on.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_FORWARDED_BYTES = 3 * 1024 * 1024
KEPT_OF_OVERSIZED_BYTES = 64 * 1024


class _StartWhereTheWorkersWere(ConsumerRebalanceListener):
    """A raw partition the repackers never committed on starts at the workers' committed offset on
    it (a pipeline whose workers read mail.logs.raw themselves before), else at its start."""

    def __init__(self, consumer: AIOKafkaConsumer, workers_committed: Callable[[TopicPartition], int | None],
                 in_hand: asyncio.Lock):
        self.consumer, self.workers_committed, self.in_hand = consumer, workers_committed, in_hand

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """The fetch in hand is sent and committed before its partitions go to another repacker,
        which would forward its records again, interleaved with these."""
        async with self.in_hand:
            pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            if await self.consumer.committed(tp) is None and (offset := self.workers_committed(tp)) is not None:
                self.consumer.seek(tp, offset)


async def repack_forever(settings: Settings, stop: asyncio.Event,
                         workers_committed: Callable[[TopicPartition], int | None] = lambda tp: None) -> None:
    """Repack mail.logs.raw onto mail.logs.packed until `stop` is set; a broker that goes away is
    waited for (the records since the last commit are read and sent again)."""
    tries = 0
    while not stop.is_set():
        try:
            await _repack(settings, stop, workers_committed)
            return
        except KafkaError as exc:
            # A commit refused because the group rebalanced: the new owner forwards those records again.
            if not exc.retriable and not isinstance(exc, CommitFailedError):
                raise
            tries += 1
            pause = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (tries - 1))
            log.warning("repacker: %r; reading again from the last commit in %.1f s", exc, pause)
            await asyncio.sleep(pause)


async def _repack(settings: Settings, stop: asyncio.Event,
                  workers_committed: Callable[[TopicPartition], int | None]) -> None:
    raw, packed = settings.topic(topics.RAW), settings.topic(topics.PACKED)
    consumer = AIOKafkaConsumer(**kafka_clients.options(
        settings, group_id=topics.repack_group(settings), enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024))
    # Compressed: workers read packed tracking logs uncompressed at 45-55k lines/s, lz4-compressed
    # at 82k (bench/e2e_throughput.py). zstd, because aiokafka's lz4 is level 9: 91 MB/s here, a
    # third of the repacker's CPU; zstd 362 MB/s and smaller (1:7.6 against 1:4.8 on tracking logs).
    producer = AIOKafkaProducer(**kafka_clients.options(
        settings, acks="all", enable_idempotence=True, compression_type="zstd", linger_ms=5,
        max_batch_size=1024 * 1024, max_request_size=MAX_REQUEST_BYTES))
    in_hand = asyncio.Lock()
    consumer.subscribe([raw], listener=_StartWhereTheWorkersWere(consumer, workers_committed, in_hand))
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=FETCH_RECORDS)
            async with in_hand:
                sent = []
                for tp, messages in fetched.items():
                    records, oversized = [], []
                    for m in messages:
                        if len(m.value or b"") <= MAX_FORWARDED_BYTES:
                            records.append(packing.RawRecord(m.offset, m.key, m.value, m.headers, m.timestamp))
                        else:
                            oversized.append(m)
                    sent += [await producer.send(packed, record.value, partition=tp.partition,
                                                 headers=record.headers, timestamp_ms=record.timestamp_ms)
                             for record in packing.repack(raw, records)]
                    if oversized:
                        sent.append(asyncio.ensure_future(_send_dead_letters(settings, oversized)))
                await asyncio.gather(*sent)
                if fetched:
                    await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in fetched.items()})
    finally:
        await consumer.stop()
        await producer.stop()


async def _send_dead_letters(settings: Settings, oversized: list) -> None:
    """Through a producer of their own, uncompressed as the workers' dead letters are (every reader of
    the topic reads them then); records this large are rare enough to pay for its connection."""
    producer = AIOKafkaProducer(**kafka_clients.options(settings, acks="all", enable_idempotence=True))
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(settings.topic(topics.DEAD_LETTERS), oversized_dead_letter(m))
                               for m in oversized])
    finally:
        await producer.stop()


def oversized_dead_letter(message) -> bytes:
    """The dead letter of a raw record too large to forward: where it is, whose it is, its size."""
    value = message.value or b""
    key = (message.key or b"").decode("utf-8", "replace")
    reason = (f"a record of {len(value)} bytes{f' from {key}' if key else ''} is larger than the repacker "
              f"forwards ({MAX_FORWARDED_BYTES} bytes): not parsed; its first {KEPT_OF_OVERSIZED_BYTES} bytes kept")
    # The record's key names its file, as the worker's dead letters of its lines do.
    return DEAD_LETTER.encode(records.dead_letter_record(reason, value[:KEPT_OF_OVERSIZED_BYTES], message.topic,
                                                         message.partition, message.offset,
                                                         SourcePosition(key) if key else None))


def run_repacker(settings: Settings) -> None:
    """`patchgate repack`: repack until SIGTERM or SIGINT, then finish the fetch in hand."""
    from pipeline.kafka_admin import workers_committed_raw

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await repack_forever(settings, stop, workers_committed_raw(settings))

    asyncio.run(main())


class RepackerChild:
    """`patchgate repack` as a child of a worker process: it runs on a core of its own, dies with the
    worker (even a worker killed with SIGKILL), and a repacker that exits stops the worker, whose
    exit status then says so."""

    def __init__(self, argv: list[str]):
        self.failed = False
        self._stopping = False
        # The child runs this very code, wherever the worker was started from.
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
        self.process = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": path}, preexec_fn=_die_with_parent)
        threading.Thread(target=self._watch, name="repacker-watch", daemon=True).start()

    def _watch(self) -> None:
        status = self.process.wait()
        if not self._stopping:
            self.failed = True
            log.critical("the repacker exited with status %s: stopping the worker", status)
            os.kill(os.getpid(), signal.SIGTERM)

    def stop(self) -> None:
        self._stopping = True
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Time the repacker gets to finish its fetch when the worker stops.
STOP_GRACE_S = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before it runs: SIGTERM when the parent dies (Linux's prctl)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
