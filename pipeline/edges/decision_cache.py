"""The MTA side's copy of mail.decisions: the latest decision per server, kept on disk.

Rebuilt from the compacted topic at start and followed from there; persisted after changes so a
restart without the broker still enforces the last known decisions. A tombstone deletes its
server (contracts.compacted): lookups answer nothing for it, and the file no longer holds it.
"""
from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.atomic_write import write_atomically
from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT_DECISION
from pipeline.contracts.compacted import Compacted
from pipeline.domain.policy import Decision


class DecisionCache:
    """The decisions by server (keyed as mail.decisions is, by server id) and by host name.

    The policy server looks up from its own thread without the lock: a host's list is replaced,
    never changed in place."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._decisions = records.latest_decisions()
        self._by_host: dict[str, list[Decision]] = {}
        self._lock = threading.Lock()
        if path is not None and path.exists():
            for line in json.loads(path.read_text()):
                self.apply(records.decision_from_value(base64.b64decode(line)))

    def __len__(self) -> int:
        return len(self._decisions.by_key)

    def apply(self, decision: Decision) -> bool:
        """Keep the decision if it is newer than the one held for its server."""
        key = decision.server_id.encode("utf-8")
        return self._change(key, lambda: self._decisions.put(key, decision))

    def apply_record(self, key: bytes, value: bytes | None) -> bool:
        """A record of mail.decisions: a decision newer than the one held for its server, or a
        tombstone that deletes the server; whether it changed the cache. Raises AvroDecodeError
        for a record that is not a decision."""
        return self._change(key, lambda: self._decisions.add(key, value))

    def replace(self, topic: Compacted[Decision]) -> None:
        """Hold what `topic` (mail.decisions read from its start) holds, and nothing else: a server
        deleted while this process was away goes as well, though compaction may have removed its
        tombstone by now."""
        by_host: dict[str, list[Decision]] = {}
        for decision in topic.by_key.values():
            by_host.setdefault(decision.hostname, []).append(decision)
        with self._lock:
            self._decisions, self._by_host = topic, by_host

    def _change(self, key: bytes, fold: Callable[[], bool]) -> bool:
        with self._lock:
            held = self._decisions.by_key.get(key)
            if not fold():
                return False
            if held is not None:
                self._unindex(held)
            kept = self._decisions.by_key.get(key)
            if kept is not None:
                self._by_host[kept.hostname] = self._by_host.get(kept.hostname, []) + [kept]
            return True

    def _unindex(self, decision: Decision) -> None:
        others = [d for d in self._by_host[decision.hostname] if d.server_id != decision.server_id]
        if others:
            self._by_host[decision.hostname] = others
        else:
            del self._by_host[decision.hostname]

    def held(self, server_id: str) -> Decision | None:
        """The newest decision held for the server."""
        return self._decisions.by_key.get(server_id.encode("utf-8"))

    def lookup(self, names: Iterable[str]) -> Decision | None:
        """The decision for the first name known (host name or IP); the strictest when orgs share it
        (of equal ones, an enforced one before one in report-only mode)."""
        for name in names:
            found = self._by_host.get(name.lower().rstrip("."))
            if found:
                return max(found, key=lambda d: (d.stage, d.block_minutes_per_hour, d.throttle_minutes_per_hour,
                                                 not d.report_only))
        return None

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            lines = [base64.b64encode(ENFORCEMENT_DECISION.single_object(records.decision_record(d))).decode()
                     for d in self._decisions.by_key.values()]
        write_atomically(self.path, json.dumps(lines))
