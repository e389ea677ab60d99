"""`patchgate milter` behind a real Postfix (smtpd_milters, as the README sets it up), following the
decisions the policy takes on the Postfix test's logs: 450 4.7.230 in a throttle window, 550
5.7.230 in a block window, accepted for servers it has no decision for, decided once per
connection, and mail accepted when the milter is down."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.streaming import topics
from pipeline.streaming.avro import ENFORCEMENT
from tests.integration.conftest import isolated_env, publish_decisions_of, until_cached
from tests.integration.test_postfix import POLICY, _free_port, write_logs

ROOT = Path(__file__).resolve().parents[2]


def start_milter(env: dict, port: int, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "milter", "--port", str(port), "--cache", str(cache)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_postfix_milter_defers_rejects_and_fails_open(tmp_path, postfix, read_topic):
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    settings, env = isolated_env(tmp_path / "data", config)
    logs = tmp_path / "logs"
    write_logs(logs)
    decided = publish_decisions_of(settings, logs)

    port, cache = _free_port(), tmp_path / "cache.json"
    milter = start_milter(env, port, cache)
    mx = postfix(None, milter_port=port)
    try:
        until_cached(cache, len(decided))
        rejected = mx.swaks("blocked.example")
        assert rejected.startswith("550 5.7.230 ") and "connection blocked for 60 mins/hr" in rejected, rejected
        throttled = mx.swaks("throttled.example")
        assert throttled.startswith("450 4.7.230 ") and "connection throttled for 60 mins/hr" in throttled, throttled
        assert mx.swaks("fine.example").startswith("250 2.1.5"), "a compliant server's mail is accepted"
        assert mx.swaks("never-seen.example").startswith("250 2.1.5"), "no decision: accepted"
    finally:
        milter.terminate()
        assert milter.wait(30) == 0, milter.stderr.read().decode() if milter.stderr else ""
    assert mx.swaks("blocked.example").startswith("250 2.1.5"), "the milter down: accepted"

    applied = [ENFORCEMENT.decode(r.value) for r in read_topic(settings, topics.ENFORCEMENT)]
    assert sorted((a["hostname"], a["action"], a["helo_name"], a["client_address"]) for a in applied) == [
        ("blocked.example", "block", "blocked.example", "127.0.0.1"),
        ("throttled.example", "throttle", "throttled.example", "127.0.0.1"),
    ]


def test_sendmail_milter_defers_rejects_and_fails_open(tmp_path, sendmail, read_topic):
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    settings, env = isolated_env(tmp_path / "data", config)
    logs = tmp_path / "logs"
    write_logs(logs)
    decided = publish_decisions_of(settings, logs)

    port, cache = _free_port(), tmp_path / "cache.json"
    milter = start_milter(env, port, cache)
    mx = sendmail(port)
    try:
        until_cached(cache, len(decided))
        # Sendmail puts the recipient before the milter's text.
        rejected = mx.session("blocked.example", recipients=("root@example.net", "postmaster@example.net"))
        assert all(reply.startswith("550 5.7.230 ") and reply.endswith("connection blocked for 60 mins/hr.")
                   for reply in rejected), rejected
        (throttled,) = mx.session("throttled.example")
        assert throttled.startswith("450 4.7.230 ") and throttled.endswith("throttled for 60 mins/hr."), throttled
        assert mx.session("fine.example")[0].startswith("250 2.1.5 "), "a compliant server's mail is accepted"
        assert mx.session("never-seen.example")[0].startswith("250 2.1.5 "), "no decision: accepted"
    finally:
        milter.terminate()
        assert milter.wait(30) == 0, milter.stderr.read().decode() if milter.stderr else ""
    assert mx.session("blocked.example")[0].startswith("250 2.1.5 "), "the milter down: accepted"

    # One record per connection; Sendmail's -bs sessions come from no address.
    applied = [ENFORCEMENT.decode(r.value) for r in read_topic(settings, topics.ENFORCEMENT)]
    assert sorted((a["hostname"], a["action"], a["helo_name"], a["client_address"]) for a in applied) == [
        ("blocked.example", "block", "blocked.example", None),
        ("throttled.example", "throttle", "throttled.example", None),
    ]
