"""The private parts of faust-streaming, mode-streaming and aiokafka that pipeline/streaming relies
on, each with the shape the project expects.

pipeline/streaming subclasses Faust's aiokafka consumer (transport.py), overrides its private
commit bookkeeping, reads its offsets (metrics.py), swaps its commit out (failures.py), reads
partition databases straight from its RocksDB store and sets its current event (tables.py), and
talks to aiokafka's client underneath (tables.py, outbox.py). None of that is public API: a release,
a patch release too, may rename it, and then the worker does not fail at once but loses or replays
records at the next rebalance. requirements.lock pins the versions checked (CHECKED_AGAINST);
after an upgrade this test names each part that changed. docs/operations.md, "Upgrading
dependencies", says what to do then.

A row of INTERNALS is checked in one of three ways:
- a method's shape (`def`, `async def` or `async generator def`, with its parameters' names and
  kinds, defaults as "=..."), from inspect.signature: what an override must keep to be called, and
  a call to keep working;
- an attribute Faust or aiokafka sets in __init__, read on an object built as the unit tests build
  it, without a broker. Building it is sturdier than looking for `self._acked_index` in the source:
  it does not care where the assignment moved, and it sees the container's type;
- a behaviour a name alone does not show: that Faust takes its transport from `_new_transport`,
  that mode still calls the `on_init` hook, what a seek leaves in aiokafka's `_position`.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import inspect
import tempfile
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

# The releases the rows below were read from; requirements.lock pins them.
CHECKED_AGAINST = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}
# Faust's aiokafka driver: the consumer class the project subclasses and its thread.
DRIVER = "faust.transport.drivers.aiokafka"
BROKER = "kafka://localhost:9092"  # never dialled: nothing here starts a client


def upgrade_note(package: str) -> str:
    return (f"{package} {CHECKED_AGAINST[package]} is the version this was checked against (installed: "
            f"{importlib.metadata.version(package)}); an upgrade changed it: see docs/operations.md, "
            "'Upgrading dependencies'")


# --- reading a name ---

def resolve(dotted: str) -> Any:
    """The object a dotted name stands for: the longest importable module, then attributes, read
    statically (a method as its function, a property or classmethod as itself)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name + ".").startswith(exc.name + "."):
                continue  # this prefix (or a parent) is no module: try a shorter one
            raise
        for attribute in parts[cut:]:
            try:
                found = inspect.getattr_static(found, attribute)
            except AttributeError:
                raise AttributeError(f"{getattr(found, '__name__', found)} has no attribute {attribute!r}") from None
        return found
    raise ModuleNotFoundError(dotted)


def shape(function: Any) -> str:
    """`def(self, tp)`, `async def(self, *partitions)`, `async generator def(self, timeout)`..."""
    if isinstance(function, (classmethod, staticmethod)):
        function = function.__func__
    if not callable(function):
        return f"not a function but {type(function).__name__}"
    kind = ("async generator def" if inspect.isasyncgenfunction(function)
            else "async def" if inspect.iscoroutinefunction(function) else "def")
    parameters = list(inspect.signature(function).parameters.values())
    words: list[str] = []
    for index, parameter in enumerate(parameters):
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in words and not any(
                p.kind is p.VAR_POSITIONAL for p in parameters):
            words.append("*")
        stars = ("*" if parameter.kind is parameter.VAR_POSITIONAL
                 else "**" if parameter.kind is parameter.VAR_KEYWORD else "")
        word = stars + parameter.name
        words.append(word + ("=..." if parameter.default is not parameter.empty else ""))
        if parameter.kind is parameter.POSITIONAL_ONLY and (
                index + 1 == len(parameters) or parameters[index + 1].kind is not parameter.POSITIONAL_ONLY):
            words.append("/")
    return f"{kind}({', '.join(words)})"


def container(value: Any) -> str:
    """`defaultdict(set)` for a defaultdict whose missing values are sets, else the type's name."""
    if isinstance(value, defaultdict) and value.default_factory is not None:
        return f"defaultdict({type(value.default_factory()).__name__})"
    return type(value).__name__


# --- objects built without a broker ---

@functools.cache
def faust_consumer() -> Any:
    """The consumer of a plain Faust app with the aiokafka driver, as app.consumer builds it."""
    import faust
    return faust.App("internals-check", broker=BROKER, store="memory://").consumer


@functools.cache
def probing_app() -> Any:
    """An app that, like PatchgateApp, brings its own transport through _new_transport, whose
    Consumer class, like InOrderConsumer, sets its state in on_init."""
    import faust
    from faust.transport.drivers import aiokafka as driver

    class ProbeConsumer(driver.Consumer):
        on_init_called = False

        def on_init(self) -> None:
            super().on_init()
            self.on_init_called = True

    class ProbeTransport(driver.Transport):
        Consumer = ProbeConsumer

    class ProbeApp(faust.App):
        def _new_transport(self) -> ProbeTransport:
            return ProbeTransport(self.conf.broker_consumer, self)

    return ProbeApp("internals-check-probe", broker=BROKER, store="memory://")


def aiokafka_consumer_attribute(name: str) -> str:
    """The type of an attribute of an AIOKafkaConsumer built (in a loop, as it requires) and stopped
    without ever starting."""
    from aiokafka import AIOKafkaConsumer

    async def built() -> str:
        consumer = AIOKafkaConsumer(bootstrap_servers="localhost:9092", enable_auto_commit=False)
        try:
            return type(getattr(consumer, name)).__name__
        finally:
            await consumer.stop()
    return asyncio.run(built())


# --- behaviours ---

def transport_from_new_transport() -> str:
    app = probing_app()
    made = type(app.transport).__name__
    return "the app's transport" if made == "ProbeTransport" else f"not called: the app's transport is a {made}"


def consumer_of_the_transports_class() -> str:
    made = type(probing_app().consumer).__name__
    return "the class of the transport's consumer" if made == "ProbeConsumer" else f"ignored: the consumer is a {made}"


def on_init_called() -> str:
    consumer = probing_app().consumer
    return "called as a service is built" if consumer.on_init_called else "never called as a service is built"


def current_event_reads_the_variable() -> str:
    from faust import streams

    class Event:
        pass
    event: Any = Event()  # only its identity is looked at
    token = streams._current_event.set(weakref.ref(event))
    try:
        seen = streams.current_event()
    finally:
        streams._current_event.reset(token)
    return ("a ContextVar of a weak reference that current_event() follows" if seen is event
            else f"set, but current_event() then returns {seen!r}")


def consumer_thread() -> str:
    from mode.threads import QueueServiceThread
    thread = faust_consumer()._thread
    relation = "a" if isinstance(thread, QueueServiceThread) else "not a"
    return f"{type(thread).__name__}, {relation} mode QueueServiceThread"


def ensure_consumer_returns_it() -> str:
    thread = faust_consumer()._thread
    before, marker = thread._consumer, object()
    thread._consumer = marker
    try:
        given = thread._ensure_consumer()
    finally:
        thread._consumer = before
    if given is not marker:
        return f"not what _ensure_consumer() returns ({given!r})"
    return "None until started, then what _ensure_consumer() returns" if before is None else f"{before!r} before start"


def position_after_a_seek() -> str:
    from aiokafka.consumer.subscription_state import SubscriptionState
    from aiokafka.structs import TopicPartition
    tp = TopicPartition("internals-check", 0)

    async def sought() -> Any:  # the subscription's futures want a loop
        subscriptions = SubscriptionState()
        subscriptions.subscribe(topics={tp.topic})
        subscriptions.assign_from_subscribed({tp})
        subscriptions.seek(tp, 38)
        return subscriptions.subscription.assignment.state_value(tp)._position
    return f"the fetch position a seek sets: {asyncio.run(sought())!r}"


def rocksdb_store(check: Callable[[Any], str]) -> Callable[[], str]:
    """Runs `check` on the RocksDB store of a two-partition table, in a scratch folder."""
    def probe() -> str:
        import faust
        with tempfile.TemporaryDirectory() as folder:
            app = faust.App("internals-check-store", broker=BROKER, store="rocksdb://", datadir=folder)
            store = app.Table("probe", key_type=bytes, value_type=bytes, partitions=2).data
            try:
                return check(store)
            finally:
                for db in list(getattr(store, "_dbs", {}).values()):
                    db.close()
    return probe


def databases_by_partition(store: Any) -> str:
    databases = store._dbs
    opened = store._db_for_partition(1)
    if list(databases.items()) != [(1, opened)]:
        return f"{container(databases)} holding {dict(databases)!r} after _db_for_partition(1)"
    return f"{container(databases)}: partition -> the database _db_for_partition opened"


def partition_database(store: Any) -> str:
    db = store._db_for_partition(0)
    db.put(b"k\0a", b"1")
    answers = (db.get(b"k\0a"), db.get(b"missing"), list(db.items(from_key=b"k\0")),
               db.property_int_value("rocksdb.estimate-num-keys"))
    if answers[:3] != (b"1", None, [(b"k\0a", b"1")]) or not isinstance(answers[3], int):
        return f"a {type(db).__name__} answering {answers!r}"
    return "a database with get, items(from_key=) and property_int_value"


# --- the table ---

@dataclass(frozen=True)
class Internal:
    package: str
    name: str
    expected: str
    found: Callable[[], str]
    used_by: str


def method(package: str, name: str, expected: str, used_by: str) -> Internal:
    return Internal(package, name, expected, lambda: shape(resolve(name)), used_by)


def attribute(package: str, name: str, expected: str, used_by: str) -> Internal:
    return Internal(package, name, expected, lambda: container(getattr(faust_consumer(), name.rsplit(".", 1)[1])),
                    used_by)


CONSUMER = f"{DRIVER}.Consumer"
THREAD = f"{DRIVER}.AIOKafkaConsumerThread"
STORE = "faust.stores.rocksdb.Store"

INTERNALS = [
    # The app and its transport: PatchgateApp brings InOrderTransport, whose Consumer is InOrderConsumer.
    method("faust-streaming", "faust.App._new_transport", "def(self)", "streaming/app.py"),
    Internal("faust-streaming", "faust.App._new_transport", "the app's transport", transport_from_new_transport,
             "streaming/app.py"),
    Internal("faust-streaming", f"{DRIVER}.Transport.Consumer", "the class of the transport's consumer",
             consumer_of_the_transports_class, "streaming/transport.py"),
    # The hook InOrderConsumer sets its state in (mode marks it deprecated in favour of __post_init__).
    method("mode-streaming", "mode.Service.on_init", "def(self)", "streaming/transport.py"),
    Internal("mode-streaming", "mode.Service.on_init", "called as a service is built", on_init_called,
             "streaming/transport.py"),
    # The consumer's commit bookkeeping, read and written by InOrderConsumer and ConsumerLag.
    attribute("faust-streaming", f"{CONSUMER}._acked", "defaultdict(list)", "streaming/transport.py"),
    attribute("faust-streaming", f"{CONSUMER}._acked_index", "defaultdict(set)", "streaming/transport.py"),
    attribute("faust-streaming", f"{CONSUMER}._read_offset", "defaultdict(NoneType)",
              "streaming/transport.py, streaming/metrics.py"),
    attribute("faust-streaming", f"{CONSUMER}._committed_offset", "defaultdict(NoneType)",
              "streaming/transport.py, streaming/metrics.py"),
    attribute("faust-streaming", f"{CONSUMER}._gap", "defaultdict(IntervalTree)", "streaming/transport.py"),
    # Methods InOrderConsumer overrides (their callers pass these parameters) or calls.
    method("faust-streaming", f"{CONSUMER}._new_offset", "def(self, tp)", "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}._add_gap", "async def(self, tp, offset_from, offset_to)",
           "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}.getmany", "async generator def(self, timeout)", "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}.seek_to_committed", "async def(self)", "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}.on_partitions_revoked", "async def(self, revoked)",
           "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}.earliest_offsets", "async def(self, *partitions)",
           "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}.seek", "async def(self, partition, offset)", "streaming/transport.py"),
    method("faust-streaming", f"{CONSUMER}.highwater", "def(self, tp)", "streaming/metrics.py"),
    # Replaced on the instance after a failure: under another name the replacement would go unused.
    method("faust-streaming", f"{CONSUMER}._commit", "async def(self, offsets)", "streaming/failures.py"),
    # What the transport tests drive and replace.
    method("faust-streaming", f"{CONSUMER}.perform_seek", "async def(self)", "tests/unit/streaming/test_transport.py"),
    method("faust-streaming", f"{CONSUMER}._wait_next_records", "async def(self, timeout)",
           "tests/unit/streaming/test_transport.py"),
    # The consumer's thread and the aiokafka consumer it runs.
    Internal("faust-streaming", f"{CONSUMER}._thread", "AIOKafkaConsumerThread, a mode QueueServiceThread",
             consumer_thread, "streaming/transport.py, streaming/tables.py"),
    Internal("faust-streaming", f"{THREAD}._consumer", "None until started, then what _ensure_consumer() returns",
             ensure_consumer_returns_it, "streaming/transport.py"),
    method("faust-streaming", f"{THREAD}._ensure_consumer", "def(self)", "streaming/tables.py"),
    method("mode-streaming", "mode.threads.QueueServiceThread.call_thread", "async def(self, fun, *args, **kwargs)",
           "streaming/tables.py"),
    # The event table reads and writes go to (tables.acting_in).
    Internal("faust-streaming", "faust.streams._current_event",
             "a ContextVar of a weak reference that current_event() follows", current_event_reads_the_variable,
             "streaming/tables.py"),
    # A table's RocksDB store, read per partition database (tables.py) and counted (metrics.py).
    method("faust-streaming", f"{STORE}._db_for_partition", "def(self, partition)", "streaming/tables.py"),
    Internal("faust-streaming", f"{STORE}._db_for_partition",
             "a database with get, items(from_key=) and property_int_value", rocksdb_store(partition_database),
             "streaming/tables.py, streaming/metrics.py"),
    Internal("faust-streaming", f"{STORE}._dbs", "dict: partition -> the database _db_for_partition opened",
             rocksdb_store(databases_by_partition), "streaming/metrics.py"),
    Internal("faust-streaming", f"{STORE}.offset_key", "bytes", lambda: type(resolve(f"{STORE}.offset_key")).__name__,
             "streaming/tables.py"),
    # aiokafka underneath: the client asked for metadata, the subscription read for the fetch position.
    Internal("aiokafka", "aiokafka.AIOKafkaConsumer._client", "AIOKafkaClient",
             lambda: aiokafka_consumer_attribute("_client"), "streaming/outbox.py, streaming/tables.py"),
    method("aiokafka", "aiokafka.client.AIOKafkaClient.fetch_all_metadata", "async def(self)", "streaming/outbox.py"),
    method("aiokafka", "aiokafka.client.AIOKafkaClient.force_metadata_update", "def(self)", "streaming/tables.py"),
    Internal("aiokafka", "aiokafka.AIOKafkaConsumer._subscription", "SubscriptionState",
             lambda: aiokafka_consumer_attribute("_subscription"), "streaming/transport.py"),
    Internal("aiokafka", "aiokafka.consumer.subscription_state.TopicPartitionState._position",
             "the fetch position a seek sets: 38", position_after_a_seek, "streaming/transport.py"),
    # The connection check every command makes first: a client's bootstrap, then one connection
    # per server to learn why none took it (the client logs the reasons and raises one error).
    method("aiokafka", "aiokafka.client.AIOKafkaClient.bootstrap", "async def(self)", "kafka_clients.py"),
    method("aiokafka", "aiokafka.conn.create_conn",
           "async def(host, port, *, client_id=..., request_timeout_ms=..., ssl_context=..., security_protocol=..., "
           "max_idle_ms=..., on_close=..., sasl_mechanism=..., sasl_plain_username=..., sasl_plain_password=..., "
           "sasl_kerberos_service_name=..., sasl_kerberos_domain_name=..., sasl_oauth_token_provider=...)",
           "kafka_clients.py"),
]


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda internal: f"{internal.name}:{internal.expected}")
def test_internal_has_the_expected_shape(internal: Internal):
    try:
        found = internal.found()
    except Exception as exc:  # a missing module or attribute, or a call it no longer takes
        found = f"{type(exc).__name__}: {exc}"
    assert found == internal.expected, (
        f"{internal.name} (used by {internal.used_by}): expected {internal.expected}, found {found}. "
        f"{upgrade_note(internal.package)}")


@pytest.mark.parametrize("package", sorted(CHECKED_AGAINST))
def test_the_installed_release_is_the_one_checked(package: str):
    installed = importlib.metadata.version(package)
    assert installed == CHECKED_AGAINST[package], (
        f"{package} {installed} is installed, the internals were checked against {CHECKED_AGAINST[package]}: "
        f"once every other test here passes on {installed} and the fault campaign holds "
        f"(docs/operations.md, 'Upgrading dependencies'), set CHECKED_AGAINST[{package!r}] to {installed!r}")
