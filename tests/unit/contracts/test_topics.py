"""Keys are placed as every Kafka client places them: the repartition step, the outbox and a table's
changelog must agree with the producers (Faust's aiokafka, kafka-python, a site's Java clients)."""
import subprocess
import sys

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings, strategies as st

from pipeline.contracts.topics import partition_for

# Java's org.apache.kafka.common.utils.Utils.murmur2 of these keys, as Kafka's own UtilsTest has them.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
def test_a_key_goes_where_the_java_client_puts_it(key, java):
    for count in (1, 4, 12, 97, 10000):
        assert partition_for(key, count) == (java & 0x7FFFFFFF) % count


@settings(max_examples=2000, deadline=None)
@given(key=st.binary(max_size=300), count=st.integers(1, 10000))
def test_a_key_goes_where_aiokafka_puts_it(key, count):
    # The worker's own producers (Faust, the outbox) are aiokafka's.
    assert partition_for(key, count) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % count


def test_the_contracts_need_no_asyncio_kafka_client():
    """An MTA or shipper host reads and writes the wire with kafka-python: the contracts load
    nothing of aiokafka, which only the worker and the connection check use."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, pipeline.contracts.topics, pipeline.contracts.records, "
                               "pipeline.contracts.packing, pipeline.contracts.control, pipeline.contracts.compacted; "
                               "print(sorted({name.partition('.')[0] for name in sys.modules}))"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    assert "'kafka'" in loaded and "'aiokafka'" not in loaded
