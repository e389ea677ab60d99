"""`patchgate ship --follow` through a broker outage: the broker is stopped while lines are being
shipped and started again 6 s later; the shipper goes on by itself, and every line arrives once,
in order. Runs on a broker of its own (deploy/kafka/kafka.sh, own home and ports), never the
shared one, because it stops it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.contracts import packing, topics

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
BROKER_ENV = {"PATCHGATE_KAFKA_HOME": "/tmp/patchgate-shipper-outage-kafka", "KAFKA_PORT": "19192",
              "KAFKA_CONTROLLER_PORT": "19193"}
OUTAGE_S = 6.0
LINES_PER_SECOND = 2_000


def broker(command: str) -> None:
    done = subprocess.run(["bash", str(KAFKA_SH), command], env={**os.environ, **BROKER_ENV},
                          capture_output=True, text=True)
    assert done.returncode == 0, f"kafka.sh {command}: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def own_broker():
    """The broker of this module, started for it and stopped after it; the pipeline's settings (the
    `pipeline_env` fixture, of a narrower scope, so made after this) and processes use it."""
    broker("start")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{BROKER_ENV['KAFKA_PORT']}")
        yield
    broker("stop")


class Writer(threading.Thread):
    """Appends `line N` lines to a log at a steady pace for `seconds`."""

    def __init__(self, path: Path, seconds: float):
        super().__init__(daemon=True)
        self.path, self.seconds, self.written = path, seconds, 0

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        with self.path.open("a") as handle:
            while time.monotonic() < end:
                for _ in range(LINES_PER_SECOND // 10):
                    self.written += 1
                    handle.write(f"line {self.written}\n")
                handle.flush()
                time.sleep(0.1)


def shipper_command(delivery_timeout_ms: int | None) -> list[str]:
    """`patchgate ship` as a child process; with `delivery_timeout_ms`, its producer gives up that soon,
    so that the outage outlasts it and the shipper itself sends again what the broker did not take."""
    if delivery_timeout_ms is None:
        return [sys.executable, "-m", "pipeline"]
    program = ("import sys; from pipeline.edges import shipper; "
               f"shipper.DELIVERY_TIMEOUT_MS = {delivery_timeout_ms}; "
               f"shipper.REQUEST_TIMEOUT_MS = {delivery_timeout_ms // 2}; "
               "from pipeline.cli import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", program]


def acknowledged_lines(checkpoint: Path, log: Path) -> int:
    saved = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
    return saved.get(str(log.resolve()), {}).get("line", 0)


def wait_for(condition, shipper: subprocess.Popen, stderr: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert shipper.poll() is None, f"the shipper exited:\n{stderr.read_text()}"
        assert time.monotonic() < deadline, f"timed out; the shipper said:\n{stderr.read_text()}"
        time.sleep(0.2)


def lines_on_topic(read_topic, settings) -> list[tuple[str, int, str]]:
    """(source, line number, text) of every line in the packed records, in partition and offset order."""
    lines = []
    for record in sorted(read_topic(settings, topics.RAW), key=lambda r: (r.partition, r.offset)):
        first, _ = packing.packed_position(record.headers)
        lines += [(record.key.decode(), first + i, text) for i, text in enumerate(record.value.decode().splitlines())]
    return lines


@pytest.mark.parametrize("delivery_timeout_ms", [None, 3_000], ids=["producer-retries", "shipper-resends"])
def test_the_shipper_rides_out_a_broker_outage_losing_and_repeating_nothing(
        own_broker, pipeline_env, read_topic, tmp_path, delivery_timeout_ms):
    settings, env = pipeline_env
    log, checkpoint, stderr = tmp_path / "mail.log", tmp_path / "ship.json", tmp_path / "ship.err"
    log.write_text("")
    writer = Writer(log, seconds=OUTAGE_S + 6)
    shipper = subprocess.Popen(
        [*shipper_command(delivery_timeout_ms), "ship", "--follow", "--checkpoint", str(checkpoint), str(log)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"))
    try:
        writer.start()
        wait_for(lambda: acknowledged_lines(checkpoint, log) > 0, shipper, stderr)
        broker("stop")
        time.sleep(OUTAGE_S)
        assert shipper.poll() is None, f"the shipper exited during the outage:\n{stderr.read_text()}"
        broker("start")
        writer.join()
        wait_for(lambda: acknowledged_lines(checkpoint, log) == writer.written, shipper, stderr)
        shipper.send_signal(signal.SIGTERM)
        assert shipper.wait(30) == 0, stderr.read_text()
    finally:
        if shipper.poll() is None:
            shipper.kill()
    lines = lines_on_topic(read_topic, settings)
    assert [(n, text) for _, n, text in lines] == [(n, f"line {n}") for n in range(1, writer.written + 1)]
    assert {source for source, _, _ in lines} == {str(log.resolve())}
    if delivery_timeout_ms is not None:
        said = stderr.read_text()
        assert "the broker did not take every line" in said and "the broker takes lines again" in said, said
