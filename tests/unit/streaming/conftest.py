"""Stand-ins for Faust's tables and events: a table that remembers which partition each write
went to (Faust takes it from the current event), and events of raw records."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from faust.streams import current_event


class PartitionedTable:
    """A dict per partition, written and read in the partition of the current event, as Faust's
    tables are."""

    def __init__(self):
        self.partitions: dict[int, dict[bytes, bytes]] = {}
        self.writes: list[tuple[int, bytes]] = []
        self.data = object()  # not RocksDB: TableBatch takes the generic path

    def _here(self) -> dict[bytes, bytes]:
        event = current_event()
        assert event is not None, "table used outside of an event's partition"
        return self.partitions.setdefault(event.message.partition, {})

    def get(self, key, default=None):
        return self._here().get(key, default)

    def __setitem__(self, key, value):
        self.writes.append((current_event().message.partition, key))
        self._here()[key] = value

    def pop(self, key, default=None):
        self.writes.append((current_event().message.partition, key))
        return self._here().pop(key, default)

    def items(self):
        return list(self._here().items())


@dataclass
class Message:
    key: bytes | None
    value: bytes
    partition: int = 0
    offset: int = 0
    topic: str = "mail.logs.raw"
    timestamp: float | None = 1_771_000_000.0
    headers: list = field(default_factory=list)


class Event:
    def __init__(self, message: Message):
        self.message = message


@pytest.fixture
def table():
    return PartitionedTable


@pytest.fixture
def event():
    def make(key=b"k", value=b"", partition=0, offset=0, headers=()):
        return Event(Message(key, value, partition, offset, headers=list(headers)))
    return make
