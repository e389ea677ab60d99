"""The one rule for reading a compacted topic (mail.decisions, mail.control, mail.notices, the
tables' changelogs): a record whose value is null, a tombstone, deletes its key.

Compaction leaves the newest record of each key, and a tombstone for delete.retention.ms (a day by
default), after which its key has left no trace. Until compaction has run, a reader sees the
records it will remove as well. A reader that takes a topic from its start folds the records
with `Compacted` (pipeline.topic_reading.read_compacted) and so sees what compaction leaves, whenever
it runs; a reader that handles one record at a time (an agent) asks `is_tombstone` first.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # typing has TypeIs from Python 3.13 on; mypy brings typing_extensions
    from typing_extensions import TypeIs

V = TypeVar("V")


def is_tombstone(value: bytes | None) -> TypeIs[None]:
    """Whether a record of a compacted topic deletes its key rather than setting it."""
    return value is None


def _newest(held: V, new: V) -> V:
    return new


class Compacted(Generic[V]):
    """What a compacted topic holds per key (`by_key`), folded from its records in the order read.

    `read` turns a record's value into what is kept; `keep(held, new)` is what a key holds after
    another record of it: by default the newer record replaces the older, as compaction does."""

    def __init__(self, read: Callable[[bytes], V], keep: Callable[[V, V], V] = _newest):
        self.read, self.keep = read, keep
        self.by_key: dict[bytes, V] = {}

    def add(self, key: bytes, value: bytes | None) -> bool:
        """Fold one record in; whether what its key holds changed. Raises what `read` raises for a
        value it cannot read, changing nothing."""
        if is_tombstone(value):
            return self.by_key.pop(key, None) is not None
        return self.put(key, self.read(value))

    def put(self, key: bytes, new: V) -> bool:
        """Fold in a value read already (a decision kept on disk, say); whether what the key holds changed."""
        held = self.by_key.get(key)
        kept = new if held is None else self.keep(held, new)
        self.by_key[key] = kept
        return kept is not held
