"""The policy server over a real TCP connection, speaking Postfix's policy delegation protocol."""
import asyncio
import contextlib
import dataclasses
import logging
from datetime import UTC, datetime

import pytest
from kafka import TopicPartition

from pipeline.domain.policy import Decision
from pipeline.domain.windows import window_offset
from pipeline.edges import mta, policy
from pipeline.edges.connection_guard import ConnectionGuard
from pipeline.edges.decision_cache import DecisionCache
from pipeline.edges.mta import PolicyServer, with_new_partitions
from pipeline.settings import MtaSettings

BLOCKED = "ex13mbx01.contoso.example"
THROTTLED = "ex10cas02.fabrikam.example"
BLOCK_ANSWER = "action=550 5.7.230 Connecting server version is out-of-date; connection blocked for 10 mins/hr.\n\n"
THROTTLE_ANSWER = "action=450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr.\n\n"
DUNNO_ANSWER = "action=DUNNO\n\n"


def request(client_name="unknown", helo_name="", client_address="192.0.2.25", **more) -> list[str]:
    """The attributes Postfix sends at RCPT time, as name=value lines."""
    attributes = {
        "request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
        "client_address": client_address, "client_name": client_name, "reverse_client_name": client_name,
        "helo_name": helo_name, "sender": "ann@contoso.example", "recipient": "jo@example.net",
        "queue_id": "", "instance": "123.456.7", "size": "0", **more,
    }
    return [f"{name}={value}" for name, value in attributes.items()]


def wire(lines: list[str]) -> bytes:
    """A request as sent: its lines, then the empty line that ends it."""
    return "".join(f"{line}\n" for line in lines).encode() + b"\n"


class Service:
    """The policy server listening on 127.0.0.1 (a port of its own), as `patchgate mta` starts it.

    `enforced` keeps (server, kind, client address) of what it applied; `ended` each connection's
    handler once it returned, or the exception it raised."""

    def __init__(self, make_decision, minute_of: str, guard: ConnectionGuard | None = None):
        cache = DecisionCache()
        cache.apply(dataclasses.replace(make_decision(1, 3), server_id=BLOCKED, hostname=BLOCKED,
                                        block_minutes_per_hour=10, throttle_minutes_per_hour=0))
        cache.apply(dataclasses.replace(make_decision(1, 2), server_id=THROTTLED, hostname=THROTTLED,
                                        block_minutes_per_hour=0, throttle_minutes_per_hour=5))
        # The first minute of that server's windows: blocking for BLOCKED, throttling for THROTTLED.
        now = datetime(2026, 3, 1, 10, window_offset(minute_of), tzinfo=UTC)
        self.enforced: list[tuple[str, str, str]] = []
        self.server = PolicyServer(cache, self._enforce, clock=lambda: now)
        self.ended: asyncio.Queue = asyncio.Queue()
        # Where a test puts one, the guard that serve_decisions puts before the handler.
        self.handle = guard.guarded(self.server.handle) if guard else self.server.handle

    def _enforce(self, decision, kind, now, request):
        self.enforced.append((decision.server_id, kind, request["client_address"]))

    async def _handle(self, reader, writer):
        try:
            await self.handle(reader, writer)
        except BaseException as exc:
            self.ended.put_nowait(exc)
            raise
        self.ended.put_nowait("returned")

    @contextlib.asynccontextmanager
    async def listening(self):
        listener = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=mta.MAX_LINE * 2)
        self.port = listener.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            listener.close()
            await listener.wait_closed()

    async def connect(self) -> "Client":
        return Client(*await asyncio.open_connection("127.0.0.1", self.port))

    async def handler_end(self):
        return await asyncio.wait_for(self.ended.get(), 5)


class Client:
    """Postfix's end of a policy connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def ask(self, lines: list[str]) -> str:
        self.writer.write(wire(lines))
        return (await asyncio.wait_for(self.reader.readuntil(b"\n\n"), 5)).decode()

    async def last_request(self, data: bytes) -> bytes:
        """Sends `data` and the end of input; what the server sends back before it closes (b"": nothing)."""
        self.writer.write(data)
        self.writer.write_eof()
        try:
            return await asyncio.wait_for(self.reader.read(), 5)
        except ConnectionResetError:  # closed with our bytes unread
            return b""
        finally:
            self.close()

    def close(self):
        self.writer.close()


def served(make_decision, scenario, minute_of=BLOCKED, guard=None) -> Service:
    """The service after `scenario` ran against it, at the first minute of `minute_of`'s windows."""
    service = Service(make_decision, minute_of, guard)

    async def run():
        async with service.listening():
            await scenario(service)
    asyncio.run(run())
    return service


def test_a_decision_for_the_client_name_is_enforced(make_decision):
    async def scenario(service):
        client = await service.connect()
        assert await client.ask(request(client_name=BLOCKED, helo_name="mail.example.org")) == BLOCK_ANSWER
        # The next request on the same connection, for a server without a decision.
        assert await client.ask(request(client_name="mx.example.org", client_address="203.0.113.9")) == DUNNO_ANSWER
        client.close()
        assert await service.handler_end() == "returned"

    assert served(make_decision, scenario).enforced == [(BLOCKED, "block", "192.0.2.25")]


def test_a_decision_for_the_helo_name_throttles_a_client_without_a_name(make_decision):
    async def scenario(service):
        client = await service.connect()
        answer = await client.ask(request(client_name="unknown", helo_name="EX10CAS02.Fabrikam.Example"))
        assert answer == THROTTLE_ANSWER
        client.close()
        assert await service.handler_end() == "returned"

    assert served(make_decision, scenario, minute_of=THROTTLED).enforced == [(THROTTLED, "throttle", "192.0.2.25")]


def test_no_decision_answers_dunno_and_enforces_nothing(make_decision):
    async def scenario(service):
        client = await service.connect()
        assert await client.ask(request(client_name="mx.example.org", helo_name="mx.example.org")) == DUNNO_ANSWER
        assert await client.ask(request(client_address="198.51.100.7")) == DUNNO_ANSWER
        client.close()
        assert await service.handler_end() == "returned"

    assert served(make_decision, scenario).enforced == []


def test_a_line_that_is_not_name_value_answers_dunno_and_the_connection_goes_on(make_decision):
    async def scenario(service):
        client = await service.connect()
        assert await client.ask(request(client_name=BLOCKED) + ["this is not an attribute"]) == DUNNO_ANSWER
        # Nothing of the bad request is left over to spoil the next one.
        assert await client.ask(request(client_name=BLOCKED)) == BLOCK_ANSWER
        client.close()
        assert await service.handler_end() == "returned"

    assert served(make_decision, scenario).enforced == [(BLOCKED, "block", "192.0.2.25")]


@pytest.mark.parametrize("length, answered", [
    (mta.MAX_LINE, True),
    (mta.MAX_LINE + 1, False),  # refused by the server's own limit
    (mta.MAX_LINE * 4, False),  # beyond what the stream reader buffers
], ids=["at the limit", "past the limit", "past the stream limit"])
def test_a_request_line_longer_than_the_limit_closes_the_connection(make_decision, length, answered):
    # The line counts with its line end.
    long_line = "x_long=" + "a" * (length - len("x_long=") - 1)

    async def scenario(service):
        client = await service.connect()
        got = await client.last_request(wire(request(client_name=BLOCKED) + [long_line]))
        assert got == (BLOCK_ANSWER.encode() if answered else b"")
        assert await service.handler_end() == "returned"
        # The server goes on serving other connections.
        other = await service.connect()
        assert await other.ask(request(client_name=BLOCKED)) == BLOCK_ANSWER
        other.close()
        assert await service.handler_end() == "returned"

    assert len(served(make_decision, scenario).enforced) == 1 + answered


@pytest.mark.parametrize("count, answered", [(mta.MAX_ATTRIBUTES, True), (mta.MAX_ATTRIBUTES + 1, False)])
def test_a_request_of_too_many_attributes_closes_the_connection(make_decision, count, answered):
    lines = request(client_name=BLOCKED)
    lines += [f"x_extra_{n}=1" for n in range(count - len(lines))]

    async def scenario(service):
        client = await service.connect()
        got = await client.last_request(wire(lines))
        assert got == (BLOCK_ANSWER.encode() if answered else b"")
        assert await service.handler_end() == "returned"

    assert len(served(make_decision, scenario).enforced) == answered


def test_a_client_gone_mid_request_ends_its_connection_quietly(make_decision):
    async def scenario(service):
        client = await service.connect()
        # A whole request but for its empty line, and half a line.
        client.writer.write(wire(request(client_name=BLOCKED))[:-1] + b"recipient=al")
        await client.writer.drain()
        client.close()
        assert await service.handler_end() == "returned"

    assert served(make_decision, scenario).enforced == []


def test_behind_the_guard_a_connection_idle_between_requests_or_mid_request_is_closed(make_decision, caplog):
    guard = ConnectionGuard(MtaSettings(idle_timeout_seconds=0.3), "policy service")

    async def scenario(service):
        between, mid_request = await service.connect(), await service.connect()
        assert await between.ask(request(client_name=BLOCKED)) == BLOCK_ANSWER
        mid_request.writer.write(wire(request(client_name=BLOCKED))[:-1])
        for client in (between, mid_request):
            assert await asyncio.wait_for(client.reader.read(), 5) == b""
            assert await service.handler_end() == "returned"
            client.close()

    with caplog.at_level(logging.INFO, logger="pipeline.edges.connection_guard"):
        assert served(make_decision, scenario, guard=guard).enforced == [(BLOCKED, "block", "192.0.2.25")]
    # The first close logged at once, the second counted for the next line.
    assert caplog.messages == ["policy service: closed 1 connections idle for 0.3 s"] and guard.idle.count == 1


class _GrowingTopic:
    """A KafkaConsumer stand-in on a topic of `count` partitions (set it to grow the topic)."""

    def __init__(self, count):
        self.count, self.assigned, self.from_start = count, [], []

    def partitions_for_topic(self, name):
        return set(range(self.count))

    def assign(self, partitions):
        self.assigned = list(partitions)

    def seek_to_beginning(self, *partitions):
        self.from_start = list(partitions)


def test_the_follower_takes_partitions_the_topic_gained_from_their_start():
    topic = _GrowingTopic(2)
    held = [TopicPartition("d", 0), TopicPartition("d", 1)]
    assert with_new_partitions(topic, "d", held) is held and topic.assigned == []
    topic.count = 4
    grown = with_new_partitions(topic, "d", held)
    assert grown == topic.assigned == [TopicPartition("d", p) for p in range(4)]
    assert topic.from_start == [TopicPartition("d", 2), TopicPartition("d", 3)]


def test_the_follower_drops_deleted_servers_and_keeps_following(decisions_topic, make_decision, monkeypatch,
                                                                 tmp_path, caplog):
    """Tombstones on mail.decisions, read at start and while following: the server goes from the
    cache and its file (DUNNO for it), and the follower reads on from there."""
    blocked = dataclasses.replace(make_decision(1, 3), server_id=BLOCKED, hostname=BLOCKED, block_minutes_per_hour=10)
    throttled = dataclasses.replace(make_decision(1, 2), server_id=THROTTLED, hostname=THROTTLED)
    # In the file from an earlier run only: its tombstone was compacted away while the MTA was stopped.
    gone = dataclasses.replace(make_decision(1, 3), server_id="gone.example", hostname="gone.example")
    path = tmp_path / "cache.json"
    cache = DecisionCache(path)
    cache.apply(gone)
    cache.save()
    topic = decisions_topic(partitions=2, batch=1)
    topic.write(blocked, partition=0)
    topic.append(b"x", b"not a decision", partition=0)
    topic.write(throttled, partition=1)
    topic.delete(THROTTLED, partition=1)
    monkeypatch.setattr(mta.kafka_clients, "KafkaConsumer", lambda **config: topic)
    follower = mta.DecisionFollower(mta.Settings(), cache)
    at_catch_up: list[Decision | None] = []

    def on_poll(topic):
        if follower.caught_up.is_set() and not at_catch_up:
            at_catch_up.extend(cache.held(server) for server in (BLOCKED, THROTTLED, "gone.example"))
            topic.delete(BLOCKED, partition=0)
            topic.write(dataclasses.replace(throttled, version=2), partition=1)
        elif at_catch_up and topic.read_to_end():
            follower.stopping.set()
    topic.on_poll = on_poll

    with caplog.at_level(logging.WARNING, logger="pipeline.edges.mta"):
        follower.run()  # returns once stopped: an error would have it read the topic from the start again
    assert topic.seeks_to_start == 1 and topic.closed
    assert at_catch_up == [blocked, None, None], "what the topic held at the start replaced the file's"
    assert caplog.messages == ["skipped mail.decisions/0/1: not an Avro record in single-object or Confluent framing "
                               "(14 bytes, starts 6e6f)"]
    assert cache.held(BLOCKED) is None and cache.lookup([BLOCKED]) is None
    assert cache.lookup([THROTTLED]).version == 2
    server = PolicyServer(cache, lambda *applied: pytest.fail("nothing to enforce"))
    assert server.answer(request(client_name=BLOCKED)) == policy.DUNNO
    restarted = DecisionCache(path)
    assert restarted.held(BLOCKED) is None and restarted.held(THROTTLED).version == 2 and len(restarted) == 1


def test_a_policy_request_with_the_messages_received_headers_releases_an_updated_server(make_decision):
    """Exim's DATA ACL asks with the message's Received headers as `received` attributes."""
    from tests.unit.edges.test_milter import CURRENT_BUILD, OLD_BUILD, SERVER, Site

    site = Site(make_decision)
    lines = [f"helo_name={SERVER}", "client_address=192.0.2.7", "protocol_state=DATA"]
    assert site.server.answer(lines + [f"received={OLD_BUILD}"]).startswith("550 5.7.230")
    assert site.server.answer(lines + [f"received={CURRENT_BUILD}"]) == policy.DUNNO
    assert site.enforced == [("block", SERVER)]
    assert [trace.received for trace in site.traces] == [(CURRENT_BUILD,)]


@pytest.mark.parametrize(("server", "throttle", "block", "recorded"), [
    (BLOCKED, 0, 10, "would-block"), (THROTTLED, 5, 0, "would-throttle")])
def test_report_only_accepts_and_records_what_it_would_have_answered(make_decision, server, throttle, block, recorded):
    cache = DecisionCache()
    cache.apply(dataclasses.replace(make_decision(1, 3), server_id=server, hostname=server, report_only=True,
                                    throttle_minutes_per_hour=throttle, block_minutes_per_hour=block))
    enforced: list[tuple[str, datetime] | str] = []
    now = datetime(2026, 3, 1, 10, window_offset(server), tzinfo=UTC)
    answers = PolicyServer(cache, lambda decision, kind, at, request: enforced.append((kind, at)), clock=lambda: now)
    assert answers.decide({"client_name": server, "client_address": "192.0.2.25"}) == policy.DUNNO
    assert enforced == [(recorded, now)]
    # Outside its windows nothing would have happened, and nothing is recorded.
    later = PolicyServer(cache, lambda *_: enforced.append("outside"), clock=lambda: now.replace(minute=(
        window_offset(server) + 30) % 60))
    assert later.decide({"client_name": server}) == policy.DUNNO and len(enforced) == 1
