"""A real Exim (Debian's exim4-daemon-light) with docs/enforcement.md's RCPT ACL statements asks `patchgate
mta`, which follows the decisions the policy takes on the same logs as the Postfix test: it defers
in a throttle window, rejects in a block window with the enhanced codes passed through, accepts
servers it has no decision for, asks once per connection, and lets mail through when `patchgate
mta` is down."""
from __future__ import annotations

from pipeline.contracts import topics
from pipeline.contracts.avro import ENFORCEMENT
from testkit.ports import free_port
from tests.integration.conftest import isolated_env, publish_decisions_of, until_cached
from tests.integration.test_mta import start_mta
from tests.integration.test_postfix import POLICY, write_logs


def test_exim_defers_rejects_and_fails_open_by_the_policys_decisions(tmp_path, exim, read_topic):
    config = tmp_path / "policy.toml"
    config.write_text(POLICY)
    settings, env = isolated_env(tmp_path / "data", config)
    logs = tmp_path / "logs"
    write_logs(logs)
    decided = publish_decisions_of(settings, logs)
    assert {d.hostname: d.stage for d in decided} == {"throttled.example": 2, "blocked.example": 3, "fine.example": 0}

    port, cache = free_port(), tmp_path / "cache.json"
    mta = start_mta(env, port, cache)
    mx = exim(port)
    try:
        until_cached(cache, len(decided))
        rejected = mx.session("blocked.example", recipients=("jo@example.net", "an@example.net"))
        assert all(reply.startswith("550 5.7.230 ") for reply in rejected), rejected
        assert "connection blocked for 60 mins/hr" in rejected[0]
        (deferred,) = mx.session("throttled.example")
        assert deferred.startswith("450 4.7.230 ") and "connection throttled for 60 mins/hr" in deferred
        assert mx.session("fine.example") == ["250 Accepted"], "a compliant server's mail is accepted"
        assert mx.session("never-seen.example", address="203.0.113.9") == ["250 Accepted"], "no decision: fail open"
    finally:
        mta.terminate()
        mta.wait(30)
    assert mx.session("blocked.example") == ["250 Accepted"], "patchgate mta down: fail open"

    # Asked once per connection: one block for the two recipients, one throttle.
    applied = [ENFORCEMENT.decode(r.value) for r in read_topic(settings, topics.ENFORCEMENT)]
    assert sorted((a["hostname"], a["action"], a["helo_name"], a["client_address"]) for a in applied) == [
        ("blocked.example", "block", "blocked.example", "198.51.100.50"),
        ("throttled.example", "throttle", "throttled.example", "198.51.100.50"),
    ]

