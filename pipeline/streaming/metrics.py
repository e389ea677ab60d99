"""The Prometheus metrics a process shows at GET /metrics, in a registry of its own (one per
process, whatever Faust apps it runs, so that several in one process, as in the tests, keep theirs
apart).

The agents count a batch at a time, never a line at a time: the hot path stays as fast as it was.
Consumer lag, table sizes and ClickHouse write failures are read when Prometheus scrapes, so they are
as fresh as the scrape:

    patchgate_raw_records_total                  records read from mail.logs.raw (quiet markers too)
    patchgate_lines_total{format}                log lines parsed, by the format of their source
    patchgate_observations_total{agent}          server observations published (ingest, observe)
    patchgate_decisions_total{stage}             decisions published, by the stage decided
    patchgate_dead_letters_total{agent}          records and lines sent to the dead-letter topic
    patchgate_sink_batch_rows{table}             rows per ClickHouse insert (histogram)
    patchgate_sink_write_seconds{table}          time until ClickHouse stored an insert, retries included
    patchgate_clickhouse_write_failures_total    failed or timed-out ClickHouse write attempts
    patchgate_consumer_lag{group,topic,partition}  records of an assigned partition not yet committed
    patchgate_table_keys{table}                  keys of a table on this worker, standbys included
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pipeline.streaming.storage import WriteHealth

# Sink inserts hold up to sink_agents.BATCH_SIZE rows (one partition's share of a batch).
ROW_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000)
# From an insert of a few rows to the writes that time out (storage.WRITE_TIMEOUT_S) and are retried.
WRITE_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """A process's metrics: counters and histograms the agents move, and what is read at each scrape
    from the apps it `watch`es."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.apps: list[faust.App] = []
        self.raw_records = Counter("patchgate_raw_records", "Records read from mail.logs.raw", registry=self.registry)
        self.lines = Counter("patchgate_lines", "Log lines parsed, by the format of their source", ["format"],
                             registry=self.registry)
        self.observations = Counter("patchgate_observations", "Server observations published, by agent", ["agent"],
                                    registry=self.registry)
        self.decisions = Counter("patchgate_decisions", "Decisions published, by the stage decided", ["stage"],
                                 registry=self.registry)
        self.dead_letters = Counter("patchgate_dead_letters", "Records and lines sent to the dead-letter topic",
                                    ["agent"], registry=self.registry)
        self.sink_batch_rows = Histogram("patchgate_sink_batch_rows", "Rows per ClickHouse insert", ["table"],
                                         buckets=ROW_BUCKETS, registry=self.registry)
        self.sink_write_seconds = Histogram("patchgate_sink_write_seconds",
                                            "Time until ClickHouse stored an insert, retries included", ["table"],
                                            buckets=WRITE_SECONDS_BUCKETS, registry=self.registry)
        self.registry.register(ConsumerLag(self.apps))
        self.registry.register(TableKeys(self.apps))

    def watch(self, app: faust.App) -> None:
        """Show the consumer lag and the table keys of `app` too."""
        self.apps.append(app)

    def watch_writes(self, health: WriteHealth) -> None:
        """Show the failed ClickHouse write attempts `health` counts (the sink role's handle)."""
        self.registry.register(WriteFailures(health))


class ConsumerLag:
    """Per partition assigned to an app (its consumer group): the high watermark minus the group's committed offset
    (before the first commit, minus the offset after the last record read). A partition not
    fetched from yet (no high watermark), or with nothing read or committed on it yet (an empty
    one), is left out."""

    def __init__(self, apps: list[faust.App]):
        self.apps = apps

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        lag = self._family()
        for app in self.apps:
            # Faust's Consumer keeps the offsets; its ConsumerT type does not declare them.
            consumer: Any = app.consumer
            try:
                highwaters = [(tp, _highwater(consumer, tp)) for tp in sorted(consumer.assignment())]
            except ConsumerNotStarted:
                highwaters = []
            for tp, highwater in highwaters:
                done = consumer._committed_offset.get(tp)
                if done is None and consumer._read_offset.get(tp) is not None:
                    done = consumer._read_offset[tp] + 1
                if highwater is not None and done is not None:
                    lag.add_metric([app.conf.id, tp.topic, str(tp.partition)], max(highwater - done, 0))
        yield lag

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("patchgate_consumer_lag", "Records of an assigned partition not yet committed",
                                 labels=["group", "topic", "partition"])


def _highwater(consumer: Any, tp: TP) -> int | None:
    try:
        return consumer.highwater(tp)
    except AssertionError:  # aiokafka's "Partition is not assigned": revoked since the assignment was read
        return None


class TableKeys:
    """Keys per table in the apps' stores, the partitions they stand by for included: RocksDB's
    estimate per partition database (counting them would read every key), or an in-memory store's
    count. Only the worker's app has tables, so their names do not clash."""

    def __init__(self, apps: list[faust.App]):
        self.apps = apps

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        keys = self._family()
        for app in self.apps:
            for name, table in sorted(app.tables.items()):
                keys.add_metric([name], stored_keys(table.data))
        yield keys

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("patchgate_table_keys", "Keys of a table on this worker, standbys included",
                                 labels=["table"])


def stored_keys(store: Any) -> int:
    """The keys in a Faust store: RocksDB's keeps one database per partition in `_dbs`."""
    databases = getattr(store, "_dbs", None)
    if databases is None:
        return len(store)
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in list(databases.values()))


class WriteFailures:
    def __init__(self, health: WriteHealth):
        self.health = health

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        failures = self._family()
        failures.add_metric([], self.health.failures)
        yield failures

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily("patchgate_clickhouse_write_failures",
                                   "Failed or timed-out ClickHouse write attempts")
