import asyncio
import time

import pytest

from pipeline.sinks.clickhouse import insert_decisions
from pipeline.sinks.queries import run_sql
from pipeline.streaming.storage import ClickHouseHandle


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


def test_a_failing_write_holds_its_partitions_retries_and_releases_them_once_stored(tmp_path, make_decision, monkeypatch):
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
    assert health == {"failing_for_s": None, "failures": 3, "last_error": "Code: 242. DB::Exception: Table is in readonly mode"}


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
