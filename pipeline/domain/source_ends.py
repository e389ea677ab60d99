"""When a source has ended, in a stream that never ends: what `evaluate` does at the end of a file.

Some formats hold lines back until more come: Postfix messages whose queue-active line has not
come yet, a header block that no blank line closed yet, tracking-log rows waiting for their
writer's FQDN. At the end of a file `evaluate` lets them go (dispatch.finish). The stream does the
same once a source has been idle for `idle_ms`, measured in event time on the partition it travels
on: the partition's clock is the newest event time its records carried, and each source that holds
something is stamped with that clock (after its own lines) when its last record came. A source
whose stamp the clock has passed by `idle_ms` has ended.

Stamping with the partition's clock rather than the source's own newest time keeps a source that
is read late (a backfill of older logs beside live ones) from looking idle while its lines still
come. A partition that receives nothing has a clock that does not move: for it the worker sends a
marker record after `idle` of quiet in wall-clock time (a "quiet" marker, naming the last offset
it saw), which ends every source stamped before it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OpenSources:
    """One partition's event-time clock and its sources that hold something: source -> [stamp in
    epoch ms or None when the partition had no event time yet, offset of its last record]."""

    clock_ms: int | None = None
    sources: dict[str, list] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict | None) -> OpenSources:
        return cls(data["clock_ms"], dict(data["sources"])) if data else cls()

    def to_json(self) -> dict:
        return {"clock_ms": self.clock_ms, "sources": self.sources}

    def advance(self, newest_ms: int | None) -> None:
        if newest_ms is not None and (self.clock_ms is None or newest_ms > self.clock_ms):
            self.clock_ms = newest_ms

    def touched(self, source: str, holds: bool, offset: int) -> None:
        """The source's records up to `offset` were read; call after `advance` for the batch."""
        if holds:
            self.sources[source] = [self.clock_ms, offset]
        else:
            self.sources.pop(source, None)

    def ended(self, idle_ms: int, quiet_through: int | None = None) -> list[str]:
        """The sources that have ended, oldest stamp first, and forgets them: those the clock has
        passed by `idle_ms`, and with a quiet marker all whose last record is at or before it."""
        if idle_ms <= 0:
            return []
        gone = [
            source for source, (stamp, offset) in self.sources.items()
            if (quiet_through is not None and offset <= quiet_through)
            or (stamp is not None and self.clock_ms - stamp >= idle_ms)
        ]
        gone.sort(key=lambda source: (self.sources[source][0] or 0, source))
        for source in gone:
            del self.sources[source]
        return gone
