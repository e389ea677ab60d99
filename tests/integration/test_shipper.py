"""`patchgate ship` against the real broker: checkpoints, tailing, rotation, truncation, kill -9."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.contracts import packing, topics
from pipeline.edges.shipper import ship

ROOT = Path(__file__).resolve().parents[2]


def shipped_lines(read_topic, settings) -> list[tuple[str, int, str]]:
    """(file, line number, text) of every line in the packed records, in the order they were sent."""
    lines = []
    for record in sorted(read_topic(settings, topics.RAW), key=lambda r: (r.partition, r.offset)):
        first, _ = packing.packed_position(record.headers)
        lines += [(record.key.decode(), first + i, text) for i, text in enumerate(record.value.decode().splitlines())]
    return lines


def append(path: Path, first: int, last: int) -> None:
    with path.open("a") as handle:
        for n in range(first, last + 1):
            handle.write(f"line {n}\n")


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_restart_neither_loses_nor_repeats_lines(pipeline_env, read_topic, tmp_path):
    settings, _ = pipeline_env
    log, checkpoint = tmp_path / "mail.log", tmp_path / "ship.json"
    append(log, 1, 1000)
    assert ship(settings, [str(log)], checkpoint=checkpoint) == 1000
    append(log, 1001, 1500)
    assert ship(settings, [str(log)], checkpoint=checkpoint) == 500
    assert ship(settings, [str(log)], checkpoint=checkpoint) == 0
    lines = shipped_lines(read_topic, settings)
    assert [(n, text) for _, n, text in lines] == [(n, f"line {n}") for n in range(1, 1501)]
    assert {source for source, _, _ in lines} == {str(log.resolve())}


def test_following_through_rotation_truncation_and_kill_9(pipeline_env, read_topic, tmp_path):
    settings, env = pipeline_env
    log, checkpoint = tmp_path / "mail.log", tmp_path / "ship.json"
    # Followed after the log in each pass: once a line written to it is acknowledged, the
    # shipper has read the log since that line was written.
    marker = tmp_path / "marker.log"
    append(log, 1, 100)
    marker.write_text("")

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ship", "--follow", "--checkpoint", str(checkpoint), str(log),
             str(marker)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def acknowledged(path=log):
        saved = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
        return saved.get(str(path.resolve()), {}).get("line", 0)

    shipper = start()
    wait_for(lambda: acknowledged() == 100)
    with log.open("a") as handle:
        handle.write("line 101 is still being wri")
    append(marker, 1, 1)
    wait_for(lambda: acknowledged(marker) == 1)
    assert acknowledged() == 100  # the shipper read past the half line, and sent none of it
    with log.open("a") as handle:
        handle.write("tten\n")
    append(log, 102, 160)
    # Rotation (logrotate's create mode): the old file moves away and a new one takes its name;
    # whatever of the old file was not shipped yet is read to its end first.
    log.rename(tmp_path / "mail.log.1")
    append(log, 1, 40)
    wait_for(lambda: acknowledged() == 40)
    shipper.kill()
    shipper.wait()
    append(log, 41, 60)  # written while no shipper runs
    # copytruncate-style rotation while we were down: the file shrinks and starts again.
    shipper = start()
    wait_for(lambda: acknowledged() == 60)
    log.write_text("")
    append(log, 1, 5)
    wait_for(lambda: acknowledged() == 5)
    shipper.send_signal(signal.SIGTERM)
    assert shipper.wait(30) == 0, shipper.stderr.read().decode()

    texts = [text for source, _, text in shipped_lines(read_topic, settings) if source == str(log.resolve())]
    expected = [f"line {n}" for n in range(1, 101)] + ["line 101 is still being written"]
    expected += [f"line {n}" for n in range(102, 161)] + [f"line {n}" for n in range(1, 61)]
    expected += [f"line {n}" for n in range(1, 6)]
    assert texts == expected
