"""The limits `patchgate mta` and `patchgate milter` hold their connections to, on real TCP
connections to 127.0.0.1, with an echo protocol behind."""
import asyncio
import contextlib
import logging
import resource
import time
from ipaddress import ip_network

import pytest

from pipeline.edges import connection_guard
from pipeline.edges.connection_guard import ConnectionGuard, Tally, make_room
from pipeline.settings import MtaSettings

LOGGER = "pipeline.edges.connection_guard"


async def echo(reader, writer):
    """A line protocol: each line sent back, until the client closes."""
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()


class ListeningGuard(ConnectionGuard):
    """The guard of a listener on `port`."""

    port: int


@contextlib.asynccontextmanager
async def guarded(limits: MtaSettings):
    guard = ListeningGuard(limits, "echo")
    listener = await asyncio.start_server(guard.guarded(echo), "127.0.0.1", 0)
    guard.port = listener.sockets[0].getsockname()[1]
    try:
        yield guard
    finally:
        listener.close()
        await listener.wait_closed()


async def connect(guard):
    return await asyncio.open_connection("127.0.0.1", guard.port)


async def answered(reader, writer, line=b"hello\n") -> bool:
    """True if the line comes back; False if the server closed the connection instead."""
    writer.write(line)
    try:
        return await asyncio.wait_for(reader.readline(), 5) == line
    except ConnectionResetError:
        return False


async def closed_within(reader, seconds) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_past_the_limit_a_new_connection_is_closed_at_once_and_the_open_ones_go_on(caplog):
    async def scenario():
        async with guarded(MtaSettings(max_connections=2)) as guard:
            first, second = await connect(guard), await connect(guard)
            assert await answered(*first) and await answered(*second)
            third = await connect(guard)
            assert await closed_within(third[0], 2), "refused at once"
            assert await answered(*first) and guard.open == 2
            first[1].close()
            await until(lambda: guard.open == 1)
            fourth = await connect(guard)
            assert await answered(*fourth), "room again once one closed"
            for _, writer in (second, fourth):
                writer.close()
            await until(lambda: guard.open == 0)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(scenario())
    assert caplog.messages == ["echo: refused 1 connections: 2 open, the mta.max_connections limit"]
    assert caplog.records[0].levelno == logging.WARNING


@pytest.mark.parametrize(("networks", "admitted"), [
    ((ip_network("192.0.2.0/24"), ip_network("2001:db8::/32")), False),
    ((ip_network("192.0.2.0/24"), ip_network("127.0.0.0/8")), True),
    (None, True),
], ids=["outside", "inside", "any"])
def test_a_client_from_outside_the_networks_is_closed_at_once(caplog, networks, admitted):
    async def scenario():
        async with guarded(MtaSettings(client_networks=networks)) as guard:
            client = await connect(guard)
            assert await answered(*client) is admitted
            client[1].close()
            await until(lambda: guard.open == 0)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(scenario())
    refused = ["echo: refused 1 connections from outside mta.client_networks (the last from 127.0.0.1)"]
    assert caplog.messages == ([] if admitted else refused)


def test_a_connection_that_sends_nothing_for_the_idle_timeout_is_closed(caplog):
    async def scenario():
        async with guarded(MtaSettings(idle_timeout_seconds=0.5)) as guard:
            silent, mid_line, talking = await connect(guard), await connect(guard), await connect(guard)
            mid_line[1].write(b"half a li")
            assert not await closed_within(silent[0], 0.3), "not before the idle timeout"
            # One line every 0.2 s for 1.4 s: never idle for long.
            for _ in range(7):
                assert await answered(*talking)
                await asyncio.sleep(0.2)
            assert await closed_within(silent[0], 0.1) and await closed_within(mid_line[0], 0.1)
            assert await answered(*talking) and guard.open == 1
            await asyncio.sleep(0.7)
            assert await closed_within(talking[0], 0.1), "idle once it stopped"
            assert guard.open == 0
            assert guard.idle.count == 2, "waiting for the next line"

    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(scenario())
    # The first close is logged at once, the next within the same 10 s wait for a later line.
    assert caplog.messages == ["echo: closed 1 connections idle for 0.5 s"]
    assert caplog.records[0].levelno == logging.INFO


def test_a_tally_logs_at_most_once_a_period_with_the_count_since_its_last_line(caplog):
    now = [100.0]
    tally = Tally(logging.WARNING, lambda count, last: f"{count} refused, the last from {last}", 10, lambda: now[0])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for second, address in enumerate(("192.0.2.1", "192.0.2.2", "192.0.2.3")):
            now[0] = 100.0 + second
            tally.add(address)
        now[0] = 109.9
        tally.log_due()
        assert caplog.messages == ["1 refused, the last from 192.0.2.1"]
        now[0] = 110.0
        tally.log_due()
        tally.log_due()
        now[0] = 130.0
        tally.log_due()  # nothing new: no line
    assert caplog.messages == ["1 refused, the last from 192.0.2.1", "2 refused, the last from 192.0.2.3"]


def test_the_counts_that_waited_are_logged_by_the_guards_own_task_and_at_the_end(caplog):
    guard = ConnectionGuard(MtaSettings(), "echo", log_every_s=0.3)

    async def scenario():
        logging_counts = asyncio.create_task(guard.log_counts())
        for _ in range(3):
            guard.idle.add()
        await asyncio.sleep(0.6)
        guard.over_limit.add()
        guard.over_limit.add()
        logging_counts.cancel()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(scenario())
        guard.log_remaining()
        guard.log_remaining()
    assert caplog.messages == ["echo: closed 1 connections idle for 300 s", "echo: closed 2 connections idle for 300 s",
                               "echo: refused 1 connections: 1000 open, the mta.max_connections limit",
                               "echo: refused 1 connections: 1000 open, the mta.max_connections limit"]


@pytest.fixture
def soft_limit():
    """Lets a test lower the soft limit on open files; put back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_open_file_limit_is_raised_to_fit_the_connections(soft_limit):
    if soft_limit != resource.RLIM_INFINITY and soft_limit < 1000 + connection_guard.SPARE_DESCRIPTORS:
        pytest.skip(f"the hard limit ({soft_limit}) is too low to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, soft_limit))
    make_room(MtaSettings(max_connections=1000))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000 + connection_guard.SPARE_DESCRIPTORS
    make_room(MtaSettings(max_connections=10))  # never lowered
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000 + connection_guard.SPARE_DESCRIPTORS


def test_an_open_file_limit_that_cannot_fit_the_connections_is_logged(soft_limit, caplog):
    if soft_limit == resource.RLIM_INFINITY or soft_limit > 1_000_000:
        pytest.skip("no hard limit below the highest mta.max_connections")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        make_room(MtaSettings(max_connections=soft_limit))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft_limit
    wanted = soft_limit + connection_guard.SPARE_DESCRIPTORS
    assert caplog.messages == [
        f"only {soft_limit} open files allowed (the hard limit), {wanted} wanted for mta.max_connections = "
        f"{soft_limit}: raise the limit (ulimit -n, systemd's LimitNOFILE) or lower the setting"]


async def until(condition, within_s=5.0):
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)
