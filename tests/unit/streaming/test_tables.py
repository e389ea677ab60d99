import orjson

from pipeline.streaming.tables import TableBatch, TableOpenMessages


def test_each_key_is_read_once_and_each_changed_key_written_once_in_its_events_partition(table, event):
    stored = table()
    on_0, on_3 = event(partition=0), event(partition=3)
    stored.partitions[3] = {b"seed": b'{"n":0}'}
    batch = TableBatch(stored)
    assert batch.get(b"seed", on_3) == {"n": 0}
    assert batch.get(b"seed", on_0) == {"n": 0}  # cached: not read again (partition 0 has no such key)
    for n in range(1, 4):
        batch.put(b"seed", {"n": n}, on_3)
    batch.put(b"other", {"n": 9}, on_0)
    assert stored.writes == []
    assert len(batch.flush()) == 2
    assert sorted(stored.writes) == [(0, b"other"), (3, b"seed")]
    assert orjson.loads(stored.partitions[3][b"seed"]) == {"n": 3}


def test_deleted_keys_go_and_a_scan_sees_the_batch_as_it_stands(table, event):
    stored = table()
    here = event(partition=1)
    stored.partitions[1] = {b"mx\0A": b'{"at":1}', b"mx\0B": b'{"at":2}', b"mz\0C": b'{"at":3}'}
    batch = TableBatch(stored)
    batch.delete(b"mx\0A", here)
    batch.put(b"mx\0D", {"at": 4}, here)
    batch.put(b"mx\0B", {"at": 5}, here)
    assert sorted(batch.scan(b"mx\0", here)) == [(b"mx\0B", {"at": 5}), (b"mx\0D", {"at": 4})]
    # Keys of another kind are left out before their values are read.
    stored.partitions[1][b"mx\0\0outbox"] = b"not JSON"
    batch.put(b"mx\0\0new", b"not JSON either", here)
    assert sorted(batch.scan(b"mx\0", here, skip=b"mx\0\0")) == [(b"mx\0B", {"at": 5}), (b"mx\0D", {"at": 4})]
    batch.delete(b"mx\0\0new", here)
    del stored.partitions[1][b"mx\0\0outbox"]
    batch.flush()
    assert set(stored.partitions[1]) == {b"mx\0B", b"mx\0D", b"mz\0C"}


def test_open_messages_of_a_source_are_keyed_by_source_and_queue_id(table, event):
    stored = table()
    batch = TableBatch(stored)
    messages = TableOpenMessages(batch, "/var/log/mail.log", event(partition=2))
    messages.put("4TqN1c2Vb8z1", {"at": 1})
    assert messages.get("4TqN1c2Vb8z1") == {"at": 1}
    assert list(messages.items()) == [("4TqN1c2Vb8z1", {"at": 1})]
    batch.flush()
    assert list(stored.partitions[2]) == [b"/var/log/mail.log\x004TqN1c2Vb8z1"]


def test_a_changelog_not_yet_in_the_metadata_is_waited_for_and_every_key_written(monkeypatch):
    """Faust raises PartitionsMismatch at the first write while the changelog topic it just created
    is not in the client's metadata yet: the flush is tried again, not the agent failed."""
    import asyncio

    from faust.exceptions import PartitionsMismatch

    from pipeline.streaming.tables import TableBatch, flushed

    attempts, refreshed = [], []

    class Batch(TableBatch):
        def __init__(self):
            pass

        async def refresh_metadata(self):
            refreshed.append(1)

        def flush(self):
            attempts.append(1)
            if len(attempts) < 3:
                raise PartitionsMismatch("changelog topic 'x-parser-state-changelog' has 0 partitions")
            return []

    async def no_wait(seconds):
        return None

    monkeypatch.setattr("pipeline.streaming.tables.asyncio.sleep", no_wait)
    asyncio.run(flushed(Batch()))
    assert (len(attempts), len(refreshed)) == (3, 2)
