"""A patched server released by its next message: the pipeline blocks and throttles two servers
from their logs; each then sends a message whose own Received header carries a current build,
through Postfix with `patchgate milter` and through Exim's DATA ACL with `patchgate mta`. The
message is accepted, its trace reaches the worker through mail.traces, and the servers' decisions
go to stage 0 within seconds, so their next messages pass without proving anything."""
from __future__ import annotations

import time

from pipeline.edges.decisions import read_decisions
from testkit.ports import free_port
from tests.integration.conftest import until_cached
from tests.integration.test_milter import TRUSTED, UPDATED, received, start_milter
from tests.integration.test_mta import start_mta
from tests.integration.test_postfix import POLICY, decided_by_a_worker, ship

TRUSTED_POLICY = POLICY.replace("[policy]\n", "[policy]" + TRUSTED)
# throttled.example ran Exchange 2013 (stage 2); it was moved to Exchange SE at the policy's baseline.
MOVED_TO_SE = received("throttled.example", "15.2.2562.17")


def newest_stages(settings) -> dict[str, int]:
    return {d.hostname: d.stage for d in read_decisions(settings, timeout_s=5)}


def test_a_blocked_and_a_throttled_server_are_released_by_their_next_message(tmp_path, pipeline_env, start_worker,
                                                                              drained, postfix, exim):
    settings, env, _ = decided_by_a_worker(tmp_path, pipeline_env, start_worker, drained, TRUSTED_POLICY)
    assert newest_stages(settings) == {"blocked.example": 3, "throttled.example": 2, "fine.example": 0}

    milter_port, policy_port = free_port(), free_port()
    milter = start_milter(env, milter_port, tmp_path / "milter-cache.json")
    mta = start_mta(env, policy_port, tmp_path / "mta-cache.json")
    try:
        until_cached(tmp_path / "milter-cache.json", 3)
        until_cached(tmp_path / "mta-cache.json", 3)
        with_milter, with_exim = postfix(None, milter_port=milter_port), exim(policy_port, at_data=True)
        assert with_milter.swaks("blocked.example", headers=()).startswith("550 5.7.230"), "no proof: blocked"
        assert with_exim.session("throttled.example", headers=())[-1].startswith("450 4.7.230"), "no proof: throttled"

        sent = time.monotonic()
        assert with_milter.swaks("blocked.example", headers=(UPDATED,)).startswith("250 2.0.0")
        assert with_exim.session("throttled.example", headers=(MOVED_TO_SE,))[-1].startswith("250 OK id=")
        while (stages := newest_stages(settings)) != {"blocked.example": 0, "throttled.example": 0,
                                                      "fine.example": 0}:
            assert time.monotonic() - sent < 60, f"not released within 60 s: {stages}"
            time.sleep(0.5)
        released_after = time.monotonic() - sent
        # Their next messages pass as any compliant server's, once the MTA side has the new decisions.
        while not with_milter.swaks("blocked.example", headers=()).startswith("250 2.0.0"):
            assert time.monotonic() - sent < 60, "the milter kept blocking"
            time.sleep(0.5)
        while not with_exim.session("throttled.example", headers=())[-1].startswith("250 OK id="):
            assert time.monotonic() - sent < 60, "Exim kept throttling"
            time.sleep(0.5)
    finally:
        for process in (milter, mta):
            process.terminate()
            process.wait(30)
    print(f"released: stage 0 on mail.decisions {released_after:.1f} s after the messages")
    assert released_after < 30


def test_postfix_asking_at_the_end_of_data_releases_a_server_by_the_message_after_the_one_it_logged(
        tmp_path, pipeline_env, start_worker, drained, postfix):
    """Postfix cannot show the policy service a message's headers: its header_checks log them, and
    the pipeline reads the build from the mail log, so the message after the refused one passes."""
    settings, env, _ = decided_by_a_worker(tmp_path, pipeline_env, start_worker, drained, TRUSTED_POLICY)
    policy_port = free_port()
    mta = start_mta(env, policy_port, tmp_path / "mta-cache.json")
    try:
        until_cached(tmp_path / "mta-cache.json", 3)
        mx = postfix(policy_port, end_of_data=True)
        client = "blocked.example[198.51.100.50]"
        refused = mx.swaks("blocked.example", headers=(UPDATED,), client=client)
        assert refused.startswith("550 5.7.230"), refused
        assert "15.1.2507.61" in mx.log(), "header_checks logged the server's Received header"

        sent = time.monotonic()
        ship(env, mx.folder / "postfix.log")
        while (stage := newest_stages(settings)["blocked.example"]) != 0:
            assert time.monotonic() - sent < 60, f"still at stage {stage} 60 s after the mail log was shipped"
            time.sleep(0.5)
        while not (answer := mx.swaks("blocked.example", headers=(), client=client)).startswith("250 2.0.0"):
            assert time.monotonic() - sent < 60, f"the next message was still refused: {answer}"
            time.sleep(0.5)
    finally:
        mta.terminate()
        mta.wait(30)
    print(f"released on the next message: stage 0 {time.monotonic() - sent:.1f} s after shipping the mail log")
