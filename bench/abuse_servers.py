"""`patchgate mta` and `patchgate milter` (pipeline.edges.connection_guard, mta, milter_protocol) under
clients that hold connections, send too much, send garbage or come from outside client_networks;
each time, whether an MTA's own requests are still answered."""
from __future__ import annotations

import asyncio
import random
import re
import socket
import statistics
import struct
import time

from abuse_rig import Child, Rig, Row, free_port, rss_mb

from pipeline.edges.milter_protocol import MAX_PACKET

IDLE_S = 3.0
MAX_CONNECTIONS = 200
FLOOD = 1000
SERVER_ENV = {"PATCHGATE_MTA_IDLE_TIMEOUT": f"{IDLE_S:g}", "PATCHGATE_MTA_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
              "PATCHGATE_MTA_CLIENT_NETWORKS": "127.0.0.1/32"}
# A client address outside 127.0.0.1/32 that this machine has (all of 127/8 is loopback on Linux).
OUTSIDER = "127.0.0.2"
POLICY_REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                  b"client_address=198.51.100.29\nclient_name=mail19.fabrikam.example\n"
                  b"helo_name=mail19.fabrikam.example\nsender=kim@fabrikam.example\nrecipient=jo@example.net\n\n")


def _start(rig: Rig, kind: str) -> tuple[Child, int]:
    port = free_port()
    child = rig.start(kind, kind, "--host", "127.0.0.1", "--port", str(port), "--cache",
                      str(rig.folder / f"{kind}-cache.json"), env=SERVER_ENV)
    child.wait_for_log(r"(policy service|milter) on 127\.0\.0\.1", 60)
    return child, port


def _connect(port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket()
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _send(sock: socket.socket, data: bytes) -> int:
    """Send what the server takes; how many bytes it took before it closed the connection."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:sent + 65536])
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def _until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """What the server sent until it closed the connection, and how long after the call that was
    (None: still open after `timeout`)."""
    started, received = time.monotonic(), b""
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not data:
            return received, time.monotonic() - started
        received += data
    return received, None


def _ask_policy(sock: socket.socket) -> tuple[str | None, float]:
    """One policy request on an open connection: its action (None: closed unanswered), and ms."""
    started = time.monotonic()
    _send(sock, POLICY_REQUEST)
    answer = b""
    try:
        while not answer.endswith(b"\n\n"):
            data = sock.recv(4096)
            if not data:
                return None, 0.0
            answer += data
    except (TimeoutError, ConnectionResetError):
        return None, 0.0
    return answer.decode().strip().removeprefix("action="), (time.monotonic() - started) * 1000


def _new_policy_client(port: int, source: str | None = None) -> tuple[str | None, float]:
    with _connect(port, source) as sock:
        return _ask_policy(sock)


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def _logged_counts(text: str, pattern: str) -> int:
    return sum(int(count) for count in re.findall(pattern, text))


async def _flood(port: int) -> dict:
    """An MTA's own connection asking twice a second while FLOOD idle connections are opened beside it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float | None] = []

    async def ask() -> None:
        started = time.monotonic()
        writer.write(POLICY_REQUEST)
        try:
            await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
            latencies.append((time.monotonic() - started) * 1000)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            latencies.append(None)

    await ask()

    async def closed_after(idle_reader: asyncio.StreamReader, at: float) -> float | None:
        """Seconds from the connection's opening to its close by the server (None: still open)."""
        try:
            await asyncio.wait_for(idle_reader.read(1), IDLE_S + 15)
        except ConnectionError:
            pass
        except TimeoutError:
            return None
        return time.monotonic() - at

    async def keep_asking() -> None:
        while True:
            await ask()
            await asyncio.sleep(0.5)

    asking = asyncio.create_task(keep_asking())
    writers, watchers = [], []
    flood_started = time.monotonic()
    for _ in range(FLOOD):
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(idle_writer)
        # Watched from the start, so that a close is timed when it comes.
        watchers.append(asyncio.create_task(closed_after(idle_reader, time.monotonic())))
    opening_s = time.monotonic() - flood_started
    closes = await asyncio.gather(*watchers)
    asking.cancel()
    for idle_writer in writers:
        idle_writer.close()
    await ask()
    writer.close()
    return {"latencies": latencies, "closes": closes, "opening_s": opening_s}


def mta_checks(rig: Rig) -> list[Row]:
    mta, port = _start(rig, "mta")
    surface = "`patchgate mta` (idle 3 s, 200 connections, clients 127.0.0.1/32)"
    rss_before = rss_mb(mta.pid)
    flood = asyncio.run(_flood(port))
    rss_flood = rss_mb(mta.pid)
    after_flood = _new_policy_client(port)
    rows = [_long_line(port, mta, surface), _many_attributes(port, surface), _random_bytes(port, surface),
            _drip(port, surface), _outsider(port, surface)]
    status = mta.stop()
    log = mta.text()
    logged_refusals = _logged_counts(log, r"refused (\d+) connections: \d+ open")
    logged_idle = _logged_counts(log, r"closed (\d+) connections idle")
    closes = flood["closes"]
    refused = [c for c in closes if c is not None and c < 1.0]
    held = [c for c in closes if c is not None and c >= IDLE_S - 0.2]
    answered = [ms for ms in flood["latencies"] if ms is not None]
    outcome = (f"opened in {flood['opening_s']:.1f} s; {len(refused)} closed at once (within "
               f"{max(refused, default=0) * 1000:,.0f} ms), {len(held)} held and closed when idle after "
               f"{min(held, default=0):.1f} to {max(held, default=0):.1f} s, {closes.count(None)} still open, "
               f"{FLOOD - len(refused) - len(held) - closes.count(None)} closed otherwise; the "
               f"MTA's own connection had {len(answered)} of {len(flood['latencies'])} requests answered meanwhile "
               f"(p50 {statistics.median(answered or [0]):.1f} ms, max {max(answered or [0]):.1f} ms); a new "
               f"connection afterwards: {after_flood[0]} in {after_flood[1]:.1f} ms; RSS {_mb(rss_before)} before, "
               f"{_mb(rss_flood)} after; the log counted {logged_refusals} refused (`{MAX_CONNECTIONS} open, the "
               f"mta.max_connections limit`) and {logged_idle} closed idle (these and the dripping client below); exit "
               f"{status} on SIGTERM")
    holds = (len(refused) == FLOOD - (MAX_CONNECTIONS - 1) and len(held) == MAX_CONNECTIONS - 1
             and all(IDLE_S - 0.1 <= c <= IDLE_S + 3 for c in held) and len(answered) == len(flood["latencies"])
             and after_flood[0] is not None and logged_refusals == len(refused) and status == 0)
    return [Row(surface, f"{FLOOD:,} connections opened and left idle beside an MTA's own (asking twice a second)",
                outcome, holds), *rows]


def _long_line(port: int, mta: Child, surface: str) -> Row:
    rss_before = rss_mb(mta.pid)
    with _connect(port) as sock:
        started = time.monotonic()
        _send(sock, b"client_name=" + b"x" * 1024 * 1024)
        answer, after = _until_closed(sock, 10)
        closed_ms = (time.monotonic() - started) * 1000
    then = _new_policy_client(port)
    outcome = (f"closed {closed_ms:,.0f} ms after the first byte, unanswered ({len(answer)} bytes back); RSS "
               f"{_mb(rss_before)} before, {_mb(rss_mb(mta.pid))} after; a new connection then: {then[0]} in "
               f"{then[1]:.1f} ms" if after is not None else "still open after 10 s")
    return Row(surface, "a request line of 1 MiB", outcome,
               after is not None and not answer and then[0] is not None)


def _many_attributes(port: int, surface: str) -> Row:
    request = b"".join(b"x%d=y\n" % number for number in range(150)) + b"\n"
    with _connect(port) as sock:
        _send(sock, request)
        answer, after = _until_closed(sock, 10)
    then = _new_policy_client(port)
    outcome = (f"closed unanswered after {after * 1000:,.0f} ms ({len(answer)} bytes back); a new connection then: "
               f"{then[0]} in {then[1]:.1f} ms" if after is not None else "still open after 10 s")
    return Row(surface, "a request of 150 attributes (the limit is 100)", outcome,
               after is not None and not answer and then[0] is not None)


def _random_bytes(port: int, surface: str) -> Row:
    garbage = random.Random(23).randbytes(64 * 1024)
    with _connect(port) as sock:
        taken = _send(sock, garbage)
        answer, after = _until_closed(sock, IDLE_S + 5)
    actions = re.findall(rb"action=([^\n]*)\n\n", answer)
    then = _new_policy_client(port)
    kinds = sorted({action.decode(errors="replace") for action in actions})
    outcome = (f"{taken:,} bytes sent; {len(actions)} answers ({', '.join(kinds) or 'none'}), then closed after "
               f"{after:.1f} s; a new connection then: {then[0]} in {then[1]:.1f} ms" if after is not None
               else "still open")
    return Row(surface, "64 KiB of random bytes", outcome,
               after is not None and set(kinds) <= {"DUNNO"} and then[0] is not None)


def _drip(port: int, surface: str) -> Row:
    with _connect(port) as sock:
        started, sent = time.monotonic(), 0
        closed = None
        while time.monotonic() - started < IDLE_S + 5:
            try:
                sock.send(b"r")
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - started
                break
            _, after = _until_closed(sock, 1.0)
            if after is not None:
                closed = time.monotonic() - started
                break
    outcome = f"closed after {closed:.1f} s, {sent} bytes in" if closed is not None else f"still open after {sent} s"
    return Row(surface, "a request line dripped one byte a second (never idle for 3 s)", outcome,
               closed is not None and closed <= IDLE_S + 2)


def _outsider(port: int, surface: str) -> Row:
    with _connect(port, OUTSIDER) as sock:
        _send(sock, POLICY_REQUEST)
        answer, after = _until_closed(sock, 10)
    inside = _new_policy_client(port)
    outcome = (f"closed at once ({after * 1000:,.0f} ms), {len(answer)} bytes back; the same request from "
               f"127.0.0.1: {inside[0]}" if after is not None else "still open after 10 s")
    return Row(surface, f"a valid request from {OUTSIDER}, outside client_networks 127.0.0.1/32", outcome,
               after is not None and after < 1.0 and not answer and inside[0] is not None)


# The milter protocol's framing (pipeline.edges.milter_protocol): a 4-byte length, a command, data.
def _packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + command + data


MILTER_SESSION = (
    _packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)),
    _packet(b"C", b"mail19.fabrikam.example\x004" + struct.pack(">H", 25) + b"198.51.100.29\x00"),
    _packet(b"H", b"mail19.fabrikam.example\x00"),
    _packet(b"M", b"<kim@fabrikam.example>\x00"),
    _packet(b"R", b"<jo@example.net>\x00"),
    _packet(b"N"),
)


def _read_packet(sock: socket.socket) -> bytes | None:
    def exactly(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            more = sock.recv(n - len(data))
            if not more:
                return None
            data += more
        return data

    prefix = exactly(4)
    return None if prefix is None else exactly(struct.unpack(">I", prefix)[0])


def _milter_session(port: int) -> tuple[str | None, float]:
    """An MTA's session (negotiation to end of headers): the last answer's command, and ms."""
    started = time.monotonic()
    with _connect(port) as sock:
        last = b""
        for packet in MILTER_SESSION:
            _send(sock, packet)
            answer = _read_packet(sock)
            if answer is None:
                return None, 0.0
            last = answer[:1]
        _send(sock, _packet(b"Q"))
    named = {b"a": "accept", b"c": "continue", b"y": "reply"}.get(last, repr(last))
    return named, (time.monotonic() - started) * 1000


def milter_checks(rig: Rig) -> list[Row]:
    milter, port = _start(rig, "milter")
    surface = "`patchgate milter` (idle 3 s)"
    baseline = _milter_session(port)
    rss_before = rss_mb(milter.pid)
    tried = (
        ("a packet announcing 0 bytes", struct.pack(">I", 0)),
        ("a packet announcing 1 MiB + 1 byte, one over the limit, then data",
         struct.pack(">I", MAX_PACKET + 1) + b"O" + b"\0" * 4096),
        ("a packet announcing 4 GiB (0xFFFFFFFF), then data", struct.pack(">I", 0xFFFFFFFF) + b"O" + b"\0" * 4096),
        ("64 KiB of random bytes", random.Random(8).randbytes(64 * 1024)),
        ("an option negotiation of 3 bytes", _packet(b"O", b"\0\0\6")),
        ("a connect packet without its address family", _packet(b"C", b"host.example")),
    )
    rows = []
    for what, data in tried:
        with _connect(port) as sock:
            _send(sock, data)
            answer, after = _until_closed(sock, 10)
        then = _milter_session(port)
        outcome = (f"closed after {after * 1000:,.0f} ms, {len(answer)} bytes back; an MTA's session then: "
                   f"{then[0]} in {then[1]:.1f} ms" if after is not None else "still open after 10 s")
        rows.append(Row(surface, what, outcome, after is not None and after < 1.0 and then[0] is not None))
    with _connect(port) as sock:
        _send(sock, b"\0\0")
        _, after = _until_closed(sock, IDLE_S + 5)
    outcome = f"closed after {after:.1f} s" if after is not None else "still open"
    rows.append(Row(surface, "half a length prefix, then silence", outcome,
                    after is not None and IDLE_S - 0.1 <= after <= IDLE_S + 2))
    rss_after = rss_mb(milter.pid)
    status = milter.stop()
    warned = len(re.findall(r"not the milter protocol, closing the connection", milter.text()))
    rows.append(Row(surface, "all of the above, then SIGTERM",
                    f"an MTA's session before them: {baseline[0]} in {baseline[1]:.1f} ms; RSS {_mb(rss_before)} "
                    f"before, {_mb(rss_after)} after; {warned} log lines `not the milter protocol, closing the "
                    f"connection: ...`; exit {status}", status == 0 and baseline[0] is not None))
    return rows
