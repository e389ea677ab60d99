"""Answer time of `patchgate mta` (or `patchgate milter`) under many concurrent MTA-like clients.

    bash deploy/kafka/kafka.sh start
    python bench/policy_server.py [--protocol policy|milter] [--clients 200] [--requests 100] [--servers 2000]

Puts decisions for N servers on a fresh mail.decisions topic, starts `patchgate mta` (or
`patchgate milter`) as its own process, and has C clients each make R requests naming a random
server: a policy request on a persistent connection, as Postfix's smtpd keeps them; or, for the
milter, an SMTP connection's worth of milter packets on a connection of its own, as Postfix and
Sendmail open one per SMTP connection (negotiation, CONNECT, HELO, MAIL, RCPT, each answered; the
time is to the RCPT answer). Beside it, in the same run and with the same clients: a bare asyncio
server of the same protocol that answers without reading (action=DUNNO; "continue" to each
milter packet), the floor of the protocol's round trips from Python clients on this machine.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import struct
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import kafka_clients  # noqa: E402
from pipeline.contracts import records, topics  # noqa: E402
from pipeline.contracts.avro import ENFORCEMENT_DECISION  # noqa: E402
from pipeline.domain.policy import Decision  # noqa: E402
from pipeline.edges import milter_protocol as milter  # noqa: E402
from pipeline.kafka_admin import ensure_topics  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from testkit.ports import free_port  # noqa: E402


def request(host: str) -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.7\n"
            f"client_name=unknown\nreverse_client_name=unknown\nhelo_name={host}\nsender=a@{host}\n"
            f"recipient=jo@example.net\nqueue_id=\nsize=0\n\n").encode()


async def client(port: int, hosts: list[str], count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        started = time.perf_counter()
        writer.write(request(random.choice(hosts)))
        await writer.drain()
        await reader.readuntil(b"\n\n")
        latencies.append(time.perf_counter() - started)
    writer.close()


def milter_packets(host: str) -> list[bytes]:
    """What Postfix sends a milter for one SMTP connection up to its first recipient, each packet
    answered."""
    return [
        milter.encode(milter.NEGOTIATE, struct.pack(">III", 6, 0x1FF, 0x1FFFFF)),
        milter.encode(milter.CONNECT, b"unknown\x004\x00\x19192.0.2.7\x00"),
        milter.encode(milter.HELO, host.encode() + b"\x00"),
        milter.encode(milter.MAIL, f"<a@{host}>\x00".encode()),
        milter.encode(milter.RCPT, b"<jo@example.net>\x00"),
    ]


async def milter_client(port: int, hosts: list[str], count: int, latencies: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for packet in milter_packets(random.choice(hosts)):
            writer.write(packet)
            await writer.drain()
            await reader.readexactly(milter.packet_length(await reader.readexactly(4)))
        latencies.append(time.perf_counter() - started)
        writer.write(milter.encode(milter.QUIT))
        writer.close()


CLIENTS = {"policy": client, "milter": milter_client}


async def load(protocol: str, port: int, hosts: list[str], clients: int,
               requests: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(CLIENTS[protocol](port, hosts, requests, latencies) for _ in range(clients)))
    return sorted(latencies), time.perf_counter() - started


async def bare_server(protocol: str, port: int) -> asyncio.Server:
    async def answer_policy(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\n\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(b"action=DUNNO\n\n")
            await writer.drain()
        writer.close()

    negotiated = milter.encode(milter.NEGOTIATE, struct.pack(">III", 6, 0, 0))
    go_on = milter.encode(milter.CONTINUE)

    async def answer_milter(reader, writer):
        while True:
            try:
                packet = await reader.readexactly(int.from_bytes(await reader.readexactly(4), "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if packet[:1] == milter.QUIT:
                break
            writer.write(negotiated if packet[:1] == milter.NEGOTIATE else go_on)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer_policy if protocol == "policy" else answer_milter, "127.0.0.1", port)


def blocks(protocol: str, port: int, host: str) -> bool:
    """Whether the server answers a request naming `host` with a 5.7.230 block."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
        if protocol == "policy":
            probe.sendall(request(host))
            return b"5.7.230" in probe.recv(4096)
        answers = b""
        for packet in milter_packets(host):
            probe.sendall(packet)
            answers += probe.recv(4096)
        return b"5.7.230" in answers


def report(name: str, unit: str, latencies: list[float], elapsed: float) -> None:
    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3

    print(f"{name:30s} {len(latencies) / elapsed:>9,.0f} {unit}/s   p50 {pct(0.5):6.2f} ms   p99 {pct(0.99):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=sorted(CLIENTS), default="policy")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--servers", type=int, default=2000)
    args = parser.parse_args()
    run = f"bench-mta-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PATCHGATE_TOPIC_PREFIX": f"{run}.", "PATCHGATE_DATA_DIR": str(ROOT / ".bench" / run)}
    settings = load_settings(None, environ=env)
    ensure_topics(settings)
    hosts = [f"ex{n:05d}.bench.example" for n in range(args.servers)]
    producer = kafka_clients.producer(settings, acks="all", linger_ms=20)
    for n, host in enumerate(hosts):
        stage, throttle, block = [(0, 0, 0), (2, 5, 0), (6, 30, 10), (8, 0, 60)][n % 4]
        decision = Decision(host, None, host, "Exchange2013", "15.0.1497.2", "unsupported", stage, throttle, block,
                            datetime(2026, 1, 1, tzinfo=UTC), date(2026, 1, 31), date(2026, 3, 2), None,
                            None, None, (), "bench", None, datetime(2026, 4, 1, tzinfo=UTC), 1)
        producer.send(settings.topic(topics.DECISIONS), key=host.encode(),
                      value=ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
    producer.flush()

    port = free_port()
    command = "mta" if args.protocol == "policy" else "milter"
    server = subprocess.Popen([sys.executable, "-m", "pipeline", command, "--port", str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the cache holds the last server's decision (the last host blocks)
            try:
                if blocks(args.protocol, port, hosts[-1]):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"patchgate {command} did not load the decisions")
            time.sleep(0.3)
        measured = asyncio.run(load(args.protocol, port, hosts, args.clients, args.requests))
        single = asyncio.run(load(args.protocol, port, hosts, 1, 2000))
    finally:
        server.terminate()
        server.wait(30)

    async def floor():
        bare_port = free_port()
        bare = await bare_server(args.protocol, bare_port)
        try:
            return await load(args.protocol, bare_port, hosts, args.clients, args.requests)
        finally:
            bare.close()

    baseline = asyncio.run(floor())
    unit = "requests" if args.protocol == "policy" else "connections"
    print(f"{args.clients} concurrent clients x {args.requests} {unit}, {args.servers} servers with decisions")
    report(f"patchgate {command}", unit, *measured)
    report(f"bare asyncio {args.protocol} server", unit, *baseline)
    report(f"patchgate {command}, one client", unit, *single)
    print(f"answer computed in the server (lookup + window): {answer_time(hosts) * 1e6:.1f} µs")


def answer_time(hosts: list[str]) -> float:
    """Mean time of PolicyServer.answer alone, in process, on the same decisions."""
    from pipeline.edges.decision_cache import DecisionCache
    from pipeline.edges.mta import PolicyServer

    cache = DecisionCache()
    for host in hosts:
        cache.apply(Decision(host, None, host, None, None, "unsupported", 8, 0, 60, None, None, None, None, None,
                             None, (), "bench", None, datetime(2026, 4, 1, tzinfo=UTC), 1))
    server = PolicyServer(cache, lambda *_: None)
    lines = [request(host).decode().splitlines()[:-1] for host in hosts[:1000]]
    started = time.perf_counter()
    for _ in range(20):
        for request_lines in lines:
            server.answer(request_lines)
    return (time.perf_counter() - started) / (20 * len(lines))


if __name__ == "__main__":
    main()
