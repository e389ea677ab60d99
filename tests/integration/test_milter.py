"""`patchgate milter` behind a real Postfix (smtpd_milters, as docs/enforcement.md sets it up) and a real
Sendmail, following the decisions the policy takes on the Postfix test's logs: at the end of a
message's headers, 450 4.7.230 in a throttle window and 550 5.7.230 in a block window; accepted for
servers it has no decision for and for a blocked server whose own Received header shows a current
build (whose trace then goes to mail.traces); mail accepted when the milter is down."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.contracts import topics
from pipeline.contracts.avro import ENFORCEMENT, MESSAGE_TRACE
from testkit.ports import free_port
from tests.integration.conftest import isolated_env, publish_decisions_of, until_cached
from tests.integration.test_postfix import POLICY, write_logs

ROOT = Path(__file__).resolve().parents[2]
# Our own MTA's name, so that the pipeline reads its Received header as ours (docs/enforcement.md).
TRUSTED = '\ntrusted_receivers = ["mx-test.example.net"]\n'


def received(server: str, build: str) -> str:
    """The header an Exchange server writes when it sends a message out, with its build."""
    return (f"Received: from mbx01.{server} (10.9.0.7) by {server} (10.1.0.9) with Microsoft SMTP Server "
            f"(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id {build}; "
            "Mon, 7 Dec 2026 09:59:58 +0000")


# blocked.example ran Exchange 2016 at 15.1.2507.9 (stage 3); 15.1.2507.61 is the policy's baseline.
OUT_OF_DATE = received("blocked.example", "15.1.2507.9")
UPDATED = received("blocked.example", "15.1.2507.61")


def start_milter(env: dict, port: int, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "milter", "--port", str(port), "--cache", str(cache)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def decided_site(tmp_path):
    """Settings, environment and decisions of the Postfix test's logs, on mail.decisions."""
    config = tmp_path / "policy.toml"
    config.write_text(POLICY.replace("[policy]\n", "[policy]" + TRUSTED))
    settings, env = isolated_env(tmp_path / "data", config)
    logs = tmp_path / "logs"
    write_logs(logs)
    return settings, env, publish_decisions_of(settings, logs)


def enforced(settings, read_topic) -> list[tuple]:
    applied = [ENFORCEMENT.decode(r.value) for r in read_topic(settings, topics.ENFORCEMENT)]
    return sorted((a["hostname"], a["action"], a["helo_name"], a["client_address"]) for a in applied)


def test_postfix_milter_defers_rejects_releases_and_fails_open(tmp_path, postfix, read_topic):
    settings, env, decided = decided_site(tmp_path)
    port, cache = free_port(), tmp_path / "cache.json"
    milter = start_milter(env, port, cache)
    mx = postfix(None, milter_port=port)
    try:
        until_cached(cache, len(decided))
        assert mx.swaks("blocked.example").startswith("250 2.1.5"), "recipients go on: the answer is at the end"
        rejected = mx.swaks("blocked.example", headers=(OUT_OF_DATE,))
        assert rejected.startswith("550 5.7.230 ") and "connection blocked for 60 mins/hr" in rejected, rejected
        throttled = mx.swaks("throttled.example", headers=())
        assert throttled.startswith("450 4.7.230 ") and "connection throttled for 60 mins/hr" in throttled, throttled
        assert mx.swaks("fine.example", headers=()).startswith("250 2.0.0"), "a compliant server's mail is accepted"
        assert mx.swaks("never-seen.example", headers=()).startswith("250 2.0.0"), "no decision: accepted"
        released = mx.swaks("blocked.example", headers=(UPDATED,))
        assert released.startswith("250 2.0.0"), f"its own header shows the current build: {released}"
    finally:
        milter.terminate()
        assert milter.wait(30) == 0, milter.stderr.read().decode() if milter.stderr else ""
    assert mx.swaks("blocked.example", headers=(OUT_OF_DATE,)).startswith("250 2.0.0"), "the milter down: accepted"

    assert enforced(settings, read_topic) == [
        ("blocked.example", "block", "blocked.example", "127.0.0.1"),
        ("throttled.example", "throttle", "throttled.example", "127.0.0.1"),
    ]
    (trace,) = [MESSAGE_TRACE.decode(r.value) for r in read_topic(settings, topics.TRACES)]
    assert trace["source_format"] == "smtp" and any("15.1.2507.61" in header for header in trace["received"])


def test_sendmail_milter_defers_rejects_and_fails_open(tmp_path, sendmail, read_topic):
    settings, env, decided = decided_site(tmp_path)
    port, cache = free_port(), tmp_path / "cache.json"
    milter = start_milter(env, port, cache)
    mx = sendmail(port)
    try:
        until_cached(cache, len(decided))
        # Sendmail puts the recipient before the milter's text; the answer comes at the end of the message.
        *recipients, data, rejected = mx.session("blocked.example", ("root@example.net", "postmaster@example.net"),
                                                 headers=(OUT_OF_DATE,))
        assert all(reply.startswith("250 2.1.5 ") for reply in recipients) and data.startswith("354 ")
        assert rejected.startswith("550 5.7.230 ") and rejected.endswith("connection blocked for 60 mins/hr."), rejected
        throttled = mx.session("throttled.example")[-1]
        assert throttled.startswith("450 4.7.230 ") and throttled.endswith("throttled for 60 mins/hr."), throttled
        assert mx.session("fine.example")[-1].startswith("250 2.0.0 "), "a compliant server's mail is accepted"
        assert mx.session("never-seen.example")[-1].startswith("250 2.0.0 "), "no decision: accepted"
        assert mx.session("blocked.example", headers=(UPDATED,))[-1].startswith("250 2.0.0 "), "released"
    finally:
        milter.terminate()
        assert milter.wait(30) == 0, milter.stderr.read().decode() if milter.stderr else ""
    assert mx.session("blocked.example")[-1].startswith("250 2.0.0 "), "the milter down: accepted"

    # One record per refused message; Sendmail's -bs sessions come from no address.
    assert enforced(settings, read_topic) == [
        ("blocked.example", "block", "blocked.example", None),
        ("throttled.example", "throttle", "throttled.example", None),
    ]
