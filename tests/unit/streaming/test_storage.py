import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from pipeline.sinks.clickhouse import insert_decisions
from pipeline.sinks.queries import run_sql
from pipeline.streaming.storage import ClickHouseBusy, ClickHouseHandle, WriteAbandoned


def test_a_refused_read_does_not_make_writes_fail(tmp_path, make_decision):
    async def scenario():
        handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
        await handle.open()
        with pytest.raises(Exception, match="readonly"):
            await handle.read(lambda client: run_sql(client, "DROP TABLE decisions"))
        await asyncio.wait_for(
            handle.write(lambda client: insert_decisions(client, [make_decision(1, 1)], "t:0:0-0"), "t:0:0-0"), 10)
        rows = await handle.read(lambda client: run_sql(client, "SELECT count() FROM decisions"))
        await handle.close()
        return rows["rows"]

    assert asyncio.run(scenario()) == [[1]]


def test_a_failing_write_holds_its_partitions_retries_and_releases_them_once_stored(tmp_path, make_decision,
                                                                                    monkeypatch):
    monkeypatch.setattr("pipeline.streaming.storage.FIRST_BACKOFF_S", 0.01)
    calls, holds, releases = [], [], []

    def insert(client):
        calls.append(1)
        if len(calls) <= 3:
            raise ConnectionError("Code: 242. DB::Exception: Table is in readonly mode")
        insert_decisions(client, [make_decision(1, 1)], "t:0:5-5")

    async def scenario():
        handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
        await handle.open()
        await asyncio.wait_for(handle.write(insert, "t:0:5-5", hold=lambda: holds.append(1),
                                            release=lambda: releases.append(1)), 10)
        health = handle.health.as_json()
        rows = await handle.read(lambda client: run_sql(client, "SELECT count() FROM decisions"))
        await handle.close()
        return health, rows["rows"]

    health, rows = asyncio.run(scenario())
    assert (len(calls), len(holds), len(releases), rows) == (4, 1, 1, [[1]])
    assert health == {"failing_for_s": None, "failures": 3,
                      "last_error": "Code: 242. DB::Exception: Table is in readonly mode"}


def test_a_slow_write_holds_its_partitions_and_is_waited_for_not_run_again(tmp_path, make_decision):
    calls, holds, releases = [], [], []

    def insert(client):
        calls.append(1)
        time.sleep(0.3)
        insert_decisions(client, [make_decision(1, 1)], "t:0:6-6")

    async def scenario():
        handle = ClickHouseHandle(f"chdb://{tmp_path}/ch", write_timeout=0.05)
        await handle.open()
        await asyncio.wait_for(handle.write(insert, "t:0:6-6", hold=lambda: holds.append(1),
                                            release=lambda: releases.append(1)), 10)
        failing = handle.health.as_json()
        await handle.close()
        return failing

    health = asyncio.run(scenario())
    assert (len(calls), len(holds), len(releases)) == (1, 1, 1)
    assert health["failures"] == 1 and health["last_error"] == "no answer after 0.05 s"


@asynccontextmanager
async def opened(path, **options) -> AsyncIterator[ClickHouseHandle]:
    handle = ClickHouseHandle(f"chdb://{path}/ch", **options)
    await handle.open()
    try:
        yield handle
    finally:
        await handle.close()


class Gate:
    """Holds the calls that pass it in their thread until opened (30 s at most: a failing test ends)."""

    def __init__(self):
        self.entered, self.open = threading.Event(), threading.Event()
        self.calls = 0

    def wait(self) -> None:
        self.calls += 1
        self.entered.set()
        self.open.wait(30)

    async def until_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 5), "no call reached the gate"


def count_decisions(client) -> list:
    return run_sql(client, "SELECT count() FROM decisions")["rows"]


def test_a_read_answers_while_a_write_hangs(tmp_path, make_decision):
    gate = Gate()

    def insert(client):
        insert_decisions(client, [make_decision(1, 1)], "t:0:7-7")
        gate.wait()

    async def scenario():
        async with opened(tmp_path) as handle:
            write = asyncio.create_task(handle.write(insert, "t:0:7-7"))
            await gate.until_entered()
            during = await asyncio.wait_for(handle.read(count_decisions), 5)
            hung = not write.done()
            gate.open.set()
            await asyncio.wait_for(write, 10)
            return during, hung, await handle.read(count_decisions)

    assert asyncio.run(scenario()) == ([[1]], True, [[1]])


def test_the_embedded_engine_runs_a_read_while_a_write_is_in_it(tmp_path):
    """What lets reads skip the writer's turn: chdb runs the reader's query during the writer's."""
    slow_insert = ("INSERT INTO slow_writes SELECT number FROM numbers(30) WHERE sleepEachRow(0.05) = 0 "
                   "SETTINGS max_block_size = 1")
    in_engine = "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO slow_writes%'"

    def create(client):
        client.command("CREATE TABLE slow_writes (n UInt64) ENGINE = MergeTree ORDER BY n")

    def insert_slowly(client):
        client.command(slow_insert)

    async def scenario():
        async with opened(tmp_path) as handle:
            await handle.write(create, "create")
            write = asyncio.create_task(handle.write(insert_slowly, "slow"))
            seen = [[0]]
            while seen == [[0]] and not write.done():
                await asyncio.sleep(0.02)
                seen = (await handle.read(lambda client: run_sql(client, in_engine)))["rows"]
            await asyncio.wait_for(write, 20)
            return seen, await handle.read(lambda client: run_sql(client, "SELECT count() FROM slow_writes"))

    seen, stored = asyncio.run(scenario())
    assert (seen, stored["rows"]) == ([[1]], [[30]])


def test_a_read_behind_a_hung_read_fails_fast_saying_so_even_after_the_first_gave_up(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.streaming.storage.READ_WAIT_S", 0.2)
    gate = Gate()

    def hung_read(client):
        gate.wait()
        return count_decisions(client)

    async def scenario():
        async with opened(tmp_path) as handle:
            first = asyncio.create_task(handle.read(hung_read))
            await gate.until_entered()
            first.cancel()  # as a web request whose client went away; its query runs on in its thread
            with pytest.raises(asyncio.CancelledError):
                await first
            started = time.monotonic()
            with pytest.raises(ClickHouseBusy, match=r"busy with an earlier read .* try again"):
                await handle.read(count_decisions)
            waited = time.monotonic() - started
            gate.open.set()
            return waited, await asyncio.wait_for(handle.read(count_decisions), 5)

    waited, after = asyncio.run(scenario())
    assert waited < 2.0 and after == [[0]]


def test_stop_gives_up_a_write_waiting_to_be_tried_again(tmp_path, monkeypatch, until):
    monkeypatch.setattr("pipeline.streaming.storage.FIRST_BACKOFF_S", 30.0)
    calls = []

    def refused(client):
        calls.append(1)
        raise ConnectionError("Code: 242. DB::Exception: Table is in readonly mode")

    async def scenario():
        async with opened(tmp_path) as handle:
            write = asyncio.create_task(handle.write(refused, "t:0:8-8"))
            await until(lambda: calls, "the write was tried")
            handle.stop()
            with pytest.raises(WriteAbandoned, match=r"t:0:8-8 given up .* readonly mode"):
                await asyncio.wait_for(write, 2)

    asyncio.run(scenario())
    assert len(calls) == 1


def test_stop_gives_up_hung_writes_and_one_queued_behind_them_never_runs(tmp_path, until):
    gate = Gate()

    async def scenario():
        async with opened(tmp_path, write_timeout=0.05) as handle:
            hung = asyncio.create_task(handle.write(lambda client: gate.wait(), "t:0:9-9"))
            await gate.until_entered()
            queued = asyncio.create_task(handle.write(lambda client: gate.wait(), "t:1:9-9"))
            await until(lambda: handle.health.failures == 2, "both writes timed out")
            handle.stop()
            outcomes = await asyncio.wait_for(asyncio.gather(hung, queued, return_exceptions=True), 2)
            gate.open.set()
            # The writer's turn comes back once the hung call returns: a write after it is stored.
            await asyncio.wait_for(handle.write(lambda client: None, "after"), 5)
            return outcomes

    outcomes = asyncio.run(scenario())
    assert [type(outcome) for outcome in outcomes] == [WriteAbandoned, WriteAbandoned] and gate.calls == 1


def test_a_write_begun_as_the_worker_stops_is_still_stored(tmp_path, make_decision):
    async def scenario():
        async with opened(tmp_path) as handle:
            handle.stop()
            await asyncio.wait_for(
                handle.write(lambda client: insert_decisions(client, [make_decision(1, 1)], "t:0:10-10"),
                             "t:0:10-10"), 10)
            return await handle.read(count_decisions)

    assert asyncio.run(scenario()) == [[1]]
