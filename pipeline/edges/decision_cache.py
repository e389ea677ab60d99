"""The MTA side's copy of mail.decisions: the latest decision per server, kept on disk.

Rebuilt from the compacted topic at start and followed from there; persisted after changes so a
restart without the broker still enforces the last known decisions.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from pipeline.domain.policy import Decision
from pipeline.streaming import records
from pipeline.streaming.avro import ENFORCEMENT_DECISION, AvroDecodeError

log = logging.getLogger(__name__)


class DecisionCache:
    def __init__(self, path: Path | None = None):
        self.path = path
        self._by_server_id: dict[str, Decision] = {}
        self._by_host: dict[str, list[Decision]] = {}
        self._lock = threading.Lock()
        if path is not None and path.exists():
            for line in json.loads(path.read_text()):
                self.apply(records.decision_from_record(ENFORCEMENT_DECISION.decode(base64.b64decode(line))))

    def __len__(self) -> int:
        return len(self._by_server_id)

    def apply(self, decision: Decision) -> bool:
        """Keep the decision if it is newer than the one held for its server."""
        with self._lock:
            held = self._by_server_id.get(decision.server_id)
            if held is not None and held.version >= decision.version:
                return False
            self._by_server_id[decision.server_id] = decision
            others = [d for d in self._by_host.get(decision.hostname, []) if d.server_id != decision.server_id]
            self._by_host[decision.hostname] = others + [decision]
            return True

    def apply_record(self, value: bytes, where: str) -> bool:
        try:
            return self.apply(records.decision_from_record(ENFORCEMENT_DECISION.decode(value)))
        except AvroDecodeError as exc:
            log.warning("skipped %s: %s", where, exc)
            return False

    def held(self, server_id: str) -> Decision | None:
        """The newest decision held for the server."""
        return self._by_server_id.get(server_id)

    def lookup(self, names: Iterable[str]) -> Decision | None:
        """The decision for the first name known (host name or IP); the strictest when orgs share it."""
        for name in names:
            found = self._by_host.get(name.lower().rstrip("."))
            if found:
                return max(found, key=lambda d: (d.stage, d.block_minutes_per_hour, d.throttle_minutes_per_hour))
        return None

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            lines = [base64.b64encode(ENFORCEMENT_DECISION.encode(records.decision_record(d))).decode()
                     for d in self._by_server_id.values()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w") as handle:
            json.dump(lines, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
