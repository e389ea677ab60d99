"""Faust tables, read and written a batch at a time.

A Faust table reads and writes the partition of the event being processed (its changelog is
co-partitioned with the topic that feeds it). A batch holds events of several partitions, so the
batch code names the event a key belongs to (`acting_in`). TableBatch keeps the values of one
batch in memory: each key is read at most once and each changed key written once, at `flush`,
which the agents call only after what the batch produced was acknowledged by the broker.
"""
from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
import orjson
from faust.exceptions import PartitionsMismatch
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event

_DELETED = object()


@contextmanager
def acting_in(event: faust.EventT) -> Iterator[None]:
    """Table reads and writes inside go to `event`'s partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class TableBatch:
    """The values of a table (bytes on disk, `decode`d here) for one batch."""

    def __init__(self, table: faust.Table, decode: Callable[[bytes], Any] = orjson.loads,
                 encode: Callable[[Any], bytes] = orjson.dumps):
        self.table, self.decode, self.encode = table, decode, encode
        self._values: dict[bytes, Any] = {}
        self._changed: dict[bytes, faust.EventT] = {}

    def get(self, key: bytes, event: faust.EventT) -> Any:
        if key not in self._values:
            stored = _stored(self.table, key, event)
            self._values[key] = None if stored is None else self.decode(stored)
        value = self._values[key]
        return None if value is _DELETED else value

    def put(self, key: bytes, value: Any, event: faust.EventT) -> None:
        self._values[key] = value
        self._changed[key] = event

    def delete(self, key: bytes, event: faust.EventT) -> None:
        self._values[key] = _DELETED
        self._changed[key] = event

    def scan(self, prefix: bytes, event: faust.EventT, skip: bytes | None = None) -> Iterator[tuple[bytes, Any]]:
        """Every key with `prefix` in the event's partition, as this batch sees it; `skip`: leave out
        the keys that start with it (values of another kind)."""
        seen = set()
        for key, stored in _stored_with_prefix(self.table, prefix, event):
            if skip is not None and key.startswith(skip):
                continue
            seen.add(key)
            value = self._values[key] if key in self._values else self.decode(stored)
            if value is not None and value is not _DELETED:
                yield key, value
        for key, value in list(self._values.items()):
            if (key.startswith(prefix) and key not in seen and value is not None and value is not _DELETED
                    and not (skip is not None and key.startswith(skip))):
                yield key, value

    def flush(self) -> list[asyncio.Future]:
        """Write every changed key; returns its changelog records' futures, done once the broker
        has them (Faust sends them in the background)."""
        sent: list[asyncio.Future] = []
        send_changelog = self.table.send_changelog

        def recorded(*args: Any, **kwargs: Any) -> Any:
            future = send_changelog(*args, **kwargs)
            sent.append(future)
            return future
        # The table's writes send their changelog records through this method: on the instance for
        # the flush only, it hands over the futures Faust otherwise drops.
        self.table.send_changelog = recorded  # type: ignore[method-assign]
        try:
            for key, event in self._changed.items():
                value = self._values[key]
                with acting_in(event):
                    if value is _DELETED:
                        self.table.pop(key, None)
                    else:
                        self.table[key] = self.encode(value)
        finally:
            del self.table.send_changelog
        self._changed.clear()
        return sent

    async def refresh_metadata(self) -> None:
        """Have the consumer ask the broker for topic metadata now. Faust checks a changelog's
        partitions in its consumer's metadata, which otherwise refreshes every few minutes: a
        changelog topic Faust created as the worker started stays at "0 partitions" until then."""
        consumer: Any = self.table.app.consumer  # Faust's aiokafka consumer, on its own thread
        thread = consumer._thread
        client = thread._ensure_consumer()._client
        await thread.call_thread(client.force_metadata_update)


async def flushed(*batches: TableBatch, patience: float = 60.0) -> list[asyncio.Future]:
    """Flush the batches; returns the changelog records' futures. A table's changelog topic that
    Faust created as the worker started may not be in the client's metadata yet at the first write
    (PartitionsMismatch: "0 partitions"): the write is tried again until it is, rather than failing
    the agent. Writing a key again is harmless; `flush` forgets the changed keys only once all are
    written."""
    deadline = time.monotonic() + patience
    sent: list[asyncio.Future] = []
    for batch in batches:
        while True:
            try:
                sent.extend(batch.flush())
                break
            except PartitionsMismatch:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.5)
                await batch.refresh_metadata()
    return sent


def _stored(table: faust.Table, key: bytes, event: faust.EventT) -> bytes | None:
    store = table.data
    if hasattr(store, "_db_for_partition"):
        # Straight from the partition's RocksDB: what Faust's table does for a read, minus its
        # layers (a missing key, the common case for a new queue id, cost ten times as much).
        return store._db_for_partition(event.message.partition).get(key)
    with acting_in(event):
        return table.get(key)


def _stored_with_prefix(table: faust.Table, prefix: bytes, event: faust.EventT) -> Iterator[tuple[bytes, bytes]]:
    store = table.data
    if hasattr(store, "_db_for_partition"):
        # RocksDB keeps keys sorted: seek to the prefix in the event's partition and read on.
        for key, value in store._db_for_partition(event.message.partition).items(from_key=prefix):
            if not key.startswith(prefix):
                return
            # Faust keeps the changelog offset it has read up to in the same database.
            if key != RocksDBStore.offset_key:
                yield key, value
    else:
        with acting_in(event):
            yield from [(k, v) for k, v in table.items() if k.startswith(prefix)]


class TableOpenMessages:
    """postfix.OpenMessages of one source in a TableBatch: key = source, NUL, queue id."""

    def __init__(self, batch: TableBatch, source: str, event: faust.EventT):
        self.batch, self.event = batch, event
        self.prefix = source.encode("utf-8") + b"\0"

    def get(self, qid: str) -> dict | None:
        return self.batch.get(self.prefix + qid.encode("utf-8"), self.event)

    def put(self, qid: str, message: dict) -> None:
        self.batch.put(self.prefix + qid.encode("utf-8"), message, self.event)

    def delete(self, qid: str) -> None:
        self.batch.delete(self.prefix + qid.encode("utf-8"), self.event)

    def items(self) -> Iterator[tuple[str, dict]]:
        for key, message in self.batch.scan(self.prefix, self.event):
            yield key[len(self.prefix):].decode("utf-8"), message
