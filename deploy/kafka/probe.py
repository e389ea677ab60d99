#!/usr/bin/env python3
"""Kafka readiness probe, standard library only: usage `probe.py HOST PORT TIMEOUT`.

Exits 0 when the broker answers a MetadataRequest that lists at least one
broker, 1 otherwise. An open port is not enough: a KRaft broker accepts TCP
before it has caught up with the controller, and until then it lists no
brokers, so only a real Metadata answer says clients can use it.

Metadata v4 is used because Kafka 4.0 dropped v0-v3 (KIP-896) and v4-v8 are
still non-flexible, so plain fixed-width encoding works (no tagged fields).
"""
import socket
import struct
import sys

API_METADATA, VERSION, CORRELATION_ID = 3, 4, 0x7067  # "pg"
CLIENT_ID = b"patchgate-probe"


def metadata_request() -> bytes:
    # Request header v1: api_key, api_version, correlation_id, client_id.
    header = struct.pack(">hhih", API_METADATA, VERSION, CORRELATION_ID, len(CLIENT_ID)) + CLIENT_ID
    # Body v4: topics = null (-1: all topics), allow_auto_topic_creation = false.
    body = struct.pack(">i?", -1, False)
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def broker_count(host: str, port: int, timeout: float) -> int:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(metadata_request())
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        resp = recv_exact(sock, size)
    # Response header v0 (correlation_id), then throttle_time_ms, then brokers array length.
    correlation_id, _throttle, count = struct.unpack_from(">iii", resp, 0)
    if correlation_id != CORRELATION_ID:
        raise ValueError(f"unexpected correlation id {correlation_id}")
    return max(count, 0)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        count = broker_count(host, port, timeout)
    except (OSError, ValueError, struct.error) as exc:
        print(f"probe {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if count < 1:
        print(f"probe {host}:{port}: metadata lists no broker yet", file=sys.stderr)
        return 1
    print(f"probe {host}:{port}: {count} broker(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
