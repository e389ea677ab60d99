"""Answer time of `patchgate mta` under many concurrent Postfix-like clients.

    bash deploy/kafka/kafka.sh start
    python bench/policy_server.py [--clients 200] [--requests 100] [--servers 2000]

Puts decisions for N servers on a fresh mail.decisions topic, starts `patchgate mta` as its own
process, and has C clients (persistent connections, as Postfix's smtpd keeps them) each send R
policy requests naming a random server. Beside it, in the same run and with the same clients:
a bare asyncio server that answers action=DUNNO to every request without reading it (the floor
of the protocol round trip from Python clients on this machine).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import kafka_clients  # noqa: E402
from pipeline.domain.policy import Decision  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.streaming import records, topics  # noqa: E402
from pipeline.streaming.admin import ensure_topics  # noqa: E402
from pipeline.streaming.avro import ENFORCEMENT_DECISION  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


async def load(port: int, hosts: list[str], clients: int, requests: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(client(port, hosts, requests, latencies) for _ in range(clients)))
    return sorted(latencies), time.perf_counter() - started


async def bare_server(port: int) -> asyncio.Server:
    async def answer(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\n\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(b"action=DUNNO\n\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


def report(name: str, latencies: list[float], elapsed: float) -> None:
    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3

    print(f"{name:28s} {len(latencies) / elapsed:>9,.0f} requests/s   p50 {pct(0.5):6.2f} ms   p99 {pct(0.99):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
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
                            datetime(2026, 1, 1, tzinfo=timezone.utc), date(2026, 1, 31), date(2026, 3, 2), None,
                            None, None, (), "bench", None, datetime(2026, 4, 1, tzinfo=timezone.utc), 1)
        producer.send(settings.topic(topics.DECISIONS), key=host.encode(),
                      value=ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
    producer.flush()

    port = free_port()
    mta = subprocess.Popen([sys.executable, "-m", "pipeline", "mta", "--port", str(port)], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the cache holds the last server's decision
            try:
                with socket.create_connection(("127.0.0.1", port)) as probe:
                    probe.sendall(request(hosts[-1]))
                    if b"5.7.230" in probe.recv(4096):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("patchgate mta did not load the decisions")
            time.sleep(0.3)
        measured = asyncio.run(load(port, hosts, args.clients, args.requests))
        single = asyncio.run(load(port, hosts, 1, 2000))
    finally:
        mta.terminate()
        mta.wait(30)

    async def floor():
        bare_port = free_port()
        server = await bare_server(bare_port)
        try:
            return await load(bare_port, hosts, args.clients, args.requests)
        finally:
            server.close()

    baseline = asyncio.run(floor())
    print(f"{args.clients} concurrent clients x {args.requests} requests, {args.servers} servers with decisions")
    report("patchgate mta", *measured)
    report("bare asyncio DUNNO server", *baseline)
    report("patchgate mta, one client", *single)
    print(f"answer computed in the server (lookup + window): {answer_time(hosts) * 1e6:.1f} µs")


def answer_time(hosts: list[str]) -> float:
    """Mean time of PolicyServer.answer alone, in process, on the same decisions."""
    from pipeline.edges.decision_cache import DecisionCache
    from pipeline.edges.mta import PolicyServer

    cache = DecisionCache()
    for host in hosts:
        cache.apply(Decision(host, None, host, None, None, "unsupported", 8, 0, 60, None, None, None, None, None,
                             None, (), "bench", None, datetime(2026, 4, 1, tzinfo=timezone.utc), 1))
    server = PolicyServer(cache, lambda *_: None)
    lines = [request(host).decode().splitlines()[:-1] for host in hosts[:1000]]
    started = time.perf_counter()
    for _ in range(20):
        for request_lines in lines:
            server.answer(request_lines)
    return (time.perf_counter() - started) / (20 * len(lines))


if __name__ == "__main__":
    main()
