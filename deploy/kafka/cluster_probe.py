#!/usr/bin/env python3
"""Readiness probe for cluster.sh's secured brokers, standard library only.

usage: cluster_probe.py CAFILE USER PASSWORD_FILE TIMEOUT [--expect N] [--self ID] PORT...

For each PORT on 127.0.0.1 it does what a real client does on the SASL_SSL
listener: TLS with the CA and hostname check on, SASL SCRAM-SHA-512 login
(server signature checked too), then a MetadataRequest. A port passes when the
brokers its answer lists number at least N (--expect, default 1) and, with
--self ID, include broker ID itself (a restarted broker is listed only once
it has caught up with the controller and is unfenced). Prints one line per
port; exits 0 only if every port passes.

An open port or a finished TLS handshake says little: a broker accepts both
before it has loaded the SCRAM credentials from the metadata log, and until
then every login fails. Only a login plus a Metadata answer says clients can
use it.
"""

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys

from probe import CLIENT_ID, CORRELATION_ID, metadata_request, recv_exact

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
MECHANISM = "SCRAM-SHA-512"


class ProbeError(Exception):
    pass


def request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    # Request header v1 (both APIs are non-flexible at the versions used here).
    header = struct.pack(">hhih", api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


def roundtrip(sock: socket.socket, payload: bytes, correlation_id: int) -> bytes:
    sock.sendall(payload)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    resp = recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", resp, 0)
    if got != correlation_id:
        raise ProbeError(f"unexpected correlation id {got}")
    return resp[4:]


def string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def authenticate(sock: socket.socket, token: bytes, correlation_id: int) -> bytes:
    # SaslAuthenticate v1: auth_bytes; answer: error_code, error_message, auth_bytes, session_lifetime_ms.
    body = roundtrip(
        sock, request(SASL_AUTHENTICATE, 1, correlation_id, struct.pack(">i", len(token)) + token), correlation_id
    )
    error, msg_len = struct.unpack_from(">hh", body, 0)
    pos = 4 + max(msg_len, 0)
    message = body[4:pos].decode(errors="replace") if msg_len >= 0 else ""
    if error:
        raise ProbeError(f"SASL authentication failed (error {error}): {message}")
    (n,) = struct.unpack_from(">i", body, pos)
    return body[pos + 4 : pos + 4 + n]


def scram_login(sock: socket.socket, user: str, password: str) -> None:
    # SaslHandshake v1 names the mechanism; the SCRAM exchange (RFC 5802) then
    # runs inside SaslAuthenticate requests.
    body = roundtrip(sock, request(SASL_HANDSHAKE, 1, 1, string(MECHANISM)), 1)
    (error,) = struct.unpack_from(">h", body, 0)
    if error:
        raise ProbeError(f"broker refuses mechanism {MECHANISM} (error {error})")

    nonce = base64.b64encode(os.urandom(24)).decode()
    name = user.replace("=", "=3D").replace(",", "=2C")
    client_first_bare = f"n={name},r={nonce}"
    server_first = authenticate(sock, ("n,," + client_first_bare).encode(), 2).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    if not fields.get("r", "").startswith(nonce):
        raise ProbeError("server nonce does not extend the client's")
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.digest(salted, b"Client Key", "sha512")
    stored_key = hashlib.sha512(client_key).digest()
    without_proof = f"c={base64.b64encode(b'n,,').decode()},r={fields['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha512")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = authenticate(sock, f"{without_proof},p={base64.b64encode(proof).decode()}".encode(), 3).decode()
    server_key = hmac.digest(salted, b"Server Key", "sha512")
    expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha512")).decode()
    if server_final != f"v={expected}":
        raise ProbeError(f"bad server signature: {server_final!r}")


def broker_ids(sock: socket.socket) -> list:
    resp = roundtrip(sock, metadata_request(), CORRELATION_ID)  # the same Metadata v4 as probe.py
    # Metadata v4 answer: throttle_time_ms, then brokers [node_id, host, port, rack].
    (count,) = struct.unpack_from(">i", resp, 4)
    pos, ids = 8, []
    for _ in range(max(count, 0)):
        (node_id, host_len) = struct.unpack_from(">ih", resp, pos)
        pos += 6 + host_len + 4
        (rack_len,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + max(rack_len, 0)
        ids.append(node_id)
    return sorted(ids)


def probe(context: ssl.SSLContext, port: int, user: str, password: str, timeout: float) -> list:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.settimeout(timeout)
            scram_login(sock, user, password)
            return broker_ids(sock)


def main(argv: list) -> int:
    args, expect, self_id = [], 1, None
    it = iter(argv)
    for arg in it:
        if arg == "--expect":
            expect = int(next(it))
        elif arg == "--self":
            self_id = int(next(it))
        else:
            args.append(arg)
    if len(args) < 5:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    cafile, user, password_file, timeout = args[0], args[1], args[2], float(args[3])
    with open(password_file, encoding="utf-8") as f:
        password = f.read().strip()
    context = ssl.create_default_context(cafile=cafile)  # verifies the chain and the IP SAN
    ok = True
    for port in (int(p) for p in args[4:]):
        try:
            ids = probe(context, port, user, password, timeout)
        except (OSError, ProbeError, ValueError, KeyError, struct.error) as exc:
            print(f"probe 127.0.0.1:{port}: {exc}")
            ok = False
            continue
        if len(ids) < expect or (self_id is not None and self_id not in ids):
            print(f"probe 127.0.0.1:{port}: metadata lists brokers {ids}, not yet enough")
            ok = False
        else:
            print(f"probe 127.0.0.1:{port}: brokers {ids}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
