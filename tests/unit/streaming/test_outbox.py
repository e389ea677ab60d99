"""The look at the end of mail.decisions that a worker taking over takes, with a tombstone there."""
import asyncio
from types import SimpleNamespace

from pipeline.settings import Settings
from pipeline.streaming import outbox

TOPIC = "mail.decisions"


class _Consumer:
    """AIOKafkaConsumer on one topic holding `written` (partition -> [(key, value)])."""

    def __init__(self, written):
        self.written, self.positions = written, {}
        metadata = SimpleNamespace(partitions_for_topic=lambda topic: set(written))
        self._client = SimpleNamespace(fetch_all_metadata=lambda: _done(metadata))

    async def start(self):
        pass

    async def stop(self):
        pass

    def assign(self, partitions):
        self.assigned = partitions

    async def end_offsets(self, partitions):
        return {tp: len(self.written[tp.partition]) for tp in partitions}

    async def beginning_offsets(self, partitions):
        return dict.fromkeys(partitions, 0)

    def seek(self, tp, offset):
        self.positions[tp] = offset

    async def position(self, tp):
        return self.positions[tp]

    async def getmany(self, timeout_ms=0):
        fetched = {}
        for tp in self.assigned:
            records = self.written[tp.partition][self.positions[tp]:]
            fetched[tp] = [SimpleNamespace(key=key, value=value) for key, value in records]
            self.positions[tp] += len(records)
        return fetched


def _done(value):
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def test_a_tombstone_at_the_end_is_passed_over_and_its_keys_left_over_decision_judged_by_the_rest(monkeypatch):
    deleted, decided_again = b"ex01.contoso.example", b"ex02.contoso.example"
    published, unpublished = (deleted, b"v1"), (decided_again, b"v2")
    written = {0: [published, (deleted, None), (decided_again, b"v1"), (decided_again, None)]}
    monkeypatch.setattr(outbox, "AIOKafkaConsumer", lambda **config: _Consumer(written))

    tail = asyncio.run(outbox.tails(Settings(), TOPIC, [published, unpublished]))
    assert tail == [published, (decided_again, b"v1")]
    # deleted's decision went out before its tombstone; decided_again's new one never did.
    assert outbox.not_yet_published([published, unpublished], tail) == [unpublished]


def test_outbox_values_hold_every_decision_with_its_state_and_stay_below_the_bound():
    from datetime import UTC, datetime, timedelta

    from pipeline.catalog_files import load_catalog
    from pipeline.domain.config import PolicyConfig
    from pipeline.domain.events import ServerObservation
    from pipeline.domain.policy import step

    decided = []
    for n in range(3000):
        server = f"mx{n}.fabrikam.example"
        state, _ = step(None, ServerObservation.once(server, server, None, datetime(2026, 2, 9, tzinfo=UTC)
                                                     + timedelta(minutes=n), "15.0.1497.2", "received-id", "<m@x>", 1),
                        PolicyConfig(), load_catalog())
        decided.append((state, (server.encode(), bytes([n % 256]) * 400)))
    values = outbox.outbox_values(decided)
    assert len(values) > 1 and max(map(len, values)) <= outbox.CHUNK_BYTES
    assert [entry for value in values for entry in outbox.outbox_entries(value)] == decided
    assert outbox.outbox_key(3, 0) == b"\0outbox/3/0" and outbox.outbox_key(3, 0).startswith(outbox.outbox_key(3))
    assert not outbox.outbox_key(3).startswith(outbox.outbox_key(1))
