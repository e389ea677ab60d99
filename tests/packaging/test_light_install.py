"""An MTA or shipper host installs patchgate without the worker's dependencies, and its commands work.

A fresh virtual environment gets requirements-edges.lock from the registry (hashes checked, wheels
only: a few megabytes) and then the wheel as `patchgate[mta,shipper]` with no index, so that pip
checks the lock satisfies what the wheel asks for those extras. From there, outside the checkout,
`patchgate mta` and `patchgate milter` answer from decisions on the broker and `patchgate ship`
sends a file to it; a worker command says which extra it needs.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from pipeline import kafka_clients
from pipeline.contracts import packing, records, topics
from pipeline.contracts.avro import ENFORCEMENT, ENFORCEMENT_DECISION
from pipeline.edges import milter_protocol as protocol
from testkit.ports import free_port
from tests.integration.conftest import _read_topic as read_topic, isolated_env
from tests.integration.test_mta import BLOCK, decision, wait_until_blocking

pytestmark = [pytest.mark.packaging, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
EDGES_LOCK = ROOT / "requirements-edges.lock"
# The worker extra's own packages, none of which an MTA or shipper host carries.
WORKER_ONLY = ("faust", "mode", "chdb", "pyarrow", "clickhouse_connect", "rocksdict", "intervaltree", "pandas",
               "prometheus_client", "cramjam")


@pytest.fixture(scope="module")
def light(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the edges lock and the wheel: its bin folder."""
    home = tmp_path_factory.mktemp("light-venv")
    venv.create(home, with_pip=False)
    pip = [sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install", "--quiet"]
    subprocess.run([*pip, "--require-hashes", "--only-binary", ":all:", "-r", str(EDGES_LOCK)], check=True, timeout=300)
    subprocess.run([*pip, "--no-index", f"{wheel}[mta,shipper]"], check=True, timeout=120)
    return home / "bin"


def environment(extra: dict | None = None) -> dict:
    """This process's environment without the checkout on the path or patchgate's settings, and `extra`."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("PATCHGATE_") and name not in ("PYTHONPATH", "PYTHONHOME")}
    return {**environ, **(extra or {})}


def test_the_light_install_is_the_edges_lock_and_patchgate(light, tmp_path):
    report = subprocess.run(
        [light / "python", "-c", "import importlib.metadata, importlib.util, json, sys, pipeline; print(json.dumps({"
         "'pipeline': pipeline.__file__, 'installed': [d.metadata['Name'] for d in importlib.metadata.distributions()],"
         f"'importable': [m for m in {WORKER_ONLY!r} if importlib.util.find_spec(m)]}}))"],
        cwd=tmp_path, env=environment(), check=True, capture_output=True, text=True, timeout=60).stdout
    facts = json.loads(report)
    assert Path(facts["pipeline"]).is_relative_to(light.parent)
    locked = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", EDGES_LOCK.read_text(), re.M)
    assert sorted(map(canonicalize_name, facts["installed"])) == sorted(map(canonicalize_name, [*locked, "patchgate"]))
    assert facts["importable"] == []


@pytest.mark.parametrize(("command", "missing"), [(["worker"], "faust"), (["evaluate", "-"], "pyarrow"),
                                                  (["report"], "clickhouse_connect")],
                         ids=["worker", "evaluate", "report"])
def test_a_worker_command_names_the_extra_it_needs(light, tmp_path, command, missing):
    done = subprocess.run([light / "patchgate", *command], cwd=tmp_path, env=environment(), input="",
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"patchgate {command[0]}: {missing} is not installed: this command needs the worker's "
                           "dependencies (pip install 'patchgate[worker]')\n")


def milter_reply(port: int, helo: str) -> bytes:
    """What `patchgate milter` answers a connection from `helo` at the end of one message's headers,
    after Postfix's option negotiation (every step may be left out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        stream = connection.makefile("rwb")

        def send(command: bytes, data: bytes = b"") -> None:
            stream.write(protocol.encode(command, data))
            stream.flush()

        def answer() -> bytes:
            length = protocol.packet_length(stream.read(4))
            return stream.read(length)

        send(protocol.NEGOTIATE, struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
        negotiated = answer()
        assert negotiated[:1] == protocol.NEGOTIATE and struct.unpack(">I", negotiated[1:5]) == (6,)
        send(protocol.CONNECT, helo.encode() + b"\x004" + struct.pack(">H", 25) + b"192.0.2.7\x00")
        send(protocol.HELO, helo.encode() + b"\x00")
        send(protocol.MAIL, b"<ann@old.example>\x00")
        send(protocol.RCPT, b"<jo@example.net>\x00")
        assert [answer() for _ in range(4)] == [protocol.CONTINUE] * 4
        send(protocol.HEADER, b"Subject\x00hello\x00")  # left out of the answers at negotiation
        send(protocol.END_OF_HEADERS)
        return answer()


def test_mta_and_milter_enforce_decisions_from_the_light_install(light, tmp_path):
    settings, env = isolated_env(tmp_path / "data", base=environment())
    producer = kafka_clients.producer(settings, acks="all")
    for server, stage, block in (("old.example", 8, 60), ("fine.example", 0, 0)):
        producer.send(settings.topic(topics.DECISIONS), key=server.encode(),
                      value=ENFORCEMENT_DECISION.encode(records.decision_record(decision(server, stage, 0, block))))
    producer.flush()
    producer.close()
    mta_port, milter_port = free_port(), free_port()
    servers = {name: subprocess.Popen([light / "patchgate", name, "--port", str(port),
                                       "--cache", str(tmp_path / f"{name}-cache.json")],
                                      cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for name, port in (("mta", mta_port), ("milter", milter_port))}
    try:
        wait_until_blocking(mta_port, "old.example", timeout=30)
        wait_until_blocking_milter(milter_port, timeout=30)
        assert milter_reply(milter_port, "fine.example") == protocol.ACCEPT
    finally:
        for process in servers.values():
            process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(30) for name, process in servers.items()}
    assert codes == {"mta": 0, "milter": 0}, {name: server.stderr.read().decode() for name, server in servers.items()}
    applied = [ENFORCEMENT.decode(record.value) for record in read_topic(settings, topics.ENFORCEMENT)]
    assert {(a["server_id"], a["action"]) for a in applied} == {("old.example", "block")}


def wait_until_blocking_milter(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if milter_reply(port, "old.example") == protocol.reply(BLOCK)[4:]:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("the milter never answered from the decisions")


def test_ship_sends_a_file_from_the_light_install(light, tmp_path):
    settings, env = isolated_env(tmp_path / "data", base=environment())
    log = tmp_path / "mail.log"
    lines = [f"2026-03-10T09:00:{n:02d}.000000+00:00 mx1 postfix/smtpd[42]: connect from a{n}.example[192.0.2.{n}]"
             for n in range(1, 21)]
    log.write_text("".join(f"{line}\n" for line in lines))
    done = subprocess.run([light / "patchgate", "ship", "--no-checkpoint", str(log)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "shipped 20 lines" in done.stderr, done.stderr
    shipped = []
    for record in sorted(read_topic(settings, topics.RAW), key=lambda record: (record.partition, record.offset)):
        first, _ = packing.packed_position(record.headers)
        assert record.key.decode() == str(log)
        shipped += list(enumerate(record.value.decode().splitlines(), start=first))
    assert shipped == list(enumerate(lines, start=1))
