"""The whole chain: log files on disk -> `patchgate ship` -> broker -> worker -> mail.decisions ->
`patchgate mta` -> a real Postfix answering swaks with the right SMTP code."""
from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from testkit.msgtrk import FIELDS_2013_LATER, Server, render
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def ship(env: dict, path: Path) -> None:
    """`patchgate ship PATH` to its end, as an operator runs it."""
    shipped = subprocess.run([sys.executable, "-m", "pipeline", "ship", str(path)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert shipped.returncode == 0, shipped.stderr
# Stage 2 throttles and stage 3 blocks for the whole hour, so the answers do not depend on the
# minute the test runs in.
POLICY = """
[policy]
stages = [
    { start_day = 0,  throttle_minutes = 0,  block_minutes = 0 },
    { start_day = 10, throttle_minutes = 60, block_minutes = 0 },
    { start_day = 20, throttle_minutes = 0,  block_minutes = 60 },
]
"""


def write_logs(folder: Path) -> None:
    rng = random.Random(5)
    folder.mkdir()
    # The logs end yesterday: the MTA applies the stage each server's schedule gives for its own
    # clock, which is then the stage of the server's last message. fine.example runs the newest
    # Exchange SE build the catalog knows.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for host, version, days in (("throttled.example", "15.00.1497.002", 15), ("blocked.example", "15.01.2507.009", 25),
                                ("fine.example", "15.02.2562.053", 25)):
        server = Server(host, "198.51.100.50", version, tuple(FIELDS_2013_LATER), host)
        text = render(server, today - timedelta(days=days), days, 2, rng)
        (folder / f"MSGTRK_{host.split('.')[0].upper()}.LOG").write_text(text, newline="")


def decided_by_a_worker(tmp_path, pipeline_env, start_worker, drained, policy: str = POLICY):
    """The logs of `write_logs` shipped and decided by a worker under `policy`: (settings, env,
    worker)."""
    settings, env = pipeline_env
    config = tmp_path / "policy.toml"
    config.write_text(policy)
    env["PATCHGATE_CONFIG"] = str(config)  # the workers' environment too
    logs = tmp_path / "logs"
    write_logs(logs)
    ship(env, logs)
    worker = start_worker()
    drained(settings, worker)
    return settings, env, worker


def test_postfix_defers_blocks_and_accepts_by_the_pipelines_decisions(tmp_path, start_worker, pipeline_env, drained,
                                                                     postfix, read_topic):
    settings, env, worker = decided_by_a_worker(tmp_path, pipeline_env, start_worker, drained)

    policy_port = free_port()
    mta = subprocess.Popen([sys.executable, "-m", "pipeline", "mta", "--port", str(policy_port),
                            "--cache", str(tmp_path / "cache.json")],
                           env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        mx = postfix(policy_port)
        deadline = time.monotonic() + 60
        while "5.7.230" not in (answer := mx.swaks("blocked.example")) and time.monotonic() < deadline:
            time.sleep(0.5)  # until the policy service has read the decisions
        assert answer.startswith("550 5.7.230"), answer
        assert "connection blocked for 60 mins/hr" in answer
        throttled = mx.swaks("throttled.example")
        assert throttled.startswith("450 4.7.230"), throttled
        assert "connection throttled for 60 mins/hr" in throttled
        assert mx.swaks("fine.example").startswith("250 2.1.5"), "a compliant server's mail is accepted"
        assert mx.swaks("never-seen.example").startswith("250 2.1.5"), "no decision: fail open"
    finally:
        mta.terminate()
        mta.wait(30)

    # What Postfix was told flows back through mail.enforcement into the report.
    drained(settings, worker)
    rows = {r["server"]: (r["stage"], r["deferred"], r["rejected"]) for r in _report(settings)}
    assert rows["throttled.example"][:2] == (2, 1)
    assert rows["blocked.example"][0] == 3 and rows["blocked.example"][2] >= 1
    assert rows["fine.example"] == (0, 0, 0)


def _report(settings):
    from pipeline.web import client

    return client.report(settings)
