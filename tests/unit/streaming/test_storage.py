import asyncio

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
