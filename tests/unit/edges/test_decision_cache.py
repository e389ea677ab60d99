import dataclasses

import pytest

from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT_DECISION, AvroDecodeError
from pipeline.edges.decision_cache import DecisionCache

SHARED_HOST = "smtp.shared-hosting.example"


@pytest.fixture
def decision_of(make_decision):
    """A decision for `org`'s server at `hostname`: stage, and minutes blocked and throttled per hour."""
    def decision_of(org, stage, block=0, throttle=0, version=1, hostname=SHARED_HOST):
        return dataclasses.replace(
            make_decision(version, stage), server_id=f"{org}/{hostname}", org=org, hostname=hostname,
            block_minutes_per_hour=block, throttle_minutes_per_hour=throttle)
    return decision_of


def held(decisions):
    """A cache that took `decisions` in this order."""
    cache = DecisionCache()
    for decision in decisions:
        assert cache.apply(decision)
    return cache


@pytest.mark.parametrize("order", [1, -1], ids=["strictest last", "strictest first"])
def test_the_strictest_decision_wins_when_orgs_share_a_host(decision_of, order):
    candidates = [decision_of("contoso", stage=1), decision_of("adatum", stage=2, throttle=10),
                  decision_of("litware", stage=3, block=5, throttle=10),
                  decision_of("fabrikam", stage=3, block=10, throttle=5)]
    assert held(candidates[::order]).lookup([SHARED_HOST]).org == "fabrikam"
    # Within a stage: more minutes blocked, then more minutes throttled.
    throttling = [decision_of("woodgrove", stage=2, throttle=5), decision_of("adatum", stage=2, throttle=10)]
    assert held(throttling[::order]).lookup([SHARED_HOST]).org == "adatum"
    assert held(candidates[2:][::order]).lookup([SHARED_HOST]).org == "fabrikam"
    # Of equal ones, the org enforced before the one in report-only mode.
    equal = [dataclasses.replace(decision_of("woodgrove", stage=3, block=5), report_only=True),
             decision_of("adatum", stage=3, block=5)]
    assert held(equal[::order]).lookup([SHARED_HOST]).org == "adatum"


def test_a_newer_decision_replaces_only_its_own_servers(decision_of):
    cache = DecisionCache()
    cache.apply(decision_of("contoso", stage=3, block=10, version=1))
    cache.apply(decision_of("fabrikam", stage=2, throttle=5, version=1))
    # contoso upgraded its server: its blocking decision is gone, fabrikam's throttling is left.
    assert cache.apply(decision_of("contoso", stage=1, version=2))
    assert cache.lookup([SHARED_HOST]).org == "fabrikam"
    # A replayed older record does not bring it back.
    assert not cache.apply(decision_of("contoso", stage=3, block=10, version=1))
    assert cache.lookup([SHARED_HOST]).org == "fabrikam"
    assert len(cache) == 2


def test_lookup_takes_the_first_name_known_in_any_case(decision_of):
    cache = DecisionCache()
    helo = decision_of("contoso", stage=3, block=10, hostname="ex13mbx01.contoso.example")
    client = decision_of("contoso", stage=1, hostname="mail.contoso.example")
    cache.apply(helo)
    cache.apply(client)
    assert cache.lookup(["nobody.example", "EX13MBX01.Contoso.Example."]) == helo
    # The first name known wins, not the strictest of all the names.
    assert cache.lookup(["mail.contoso.example", "ex13mbx01.contoso.example"]) == client
    assert cache.lookup(["nobody.example", "192.0.2.1"]) is None
    assert cache.lookup([]) is None


def test_saved_decisions_come_back_after_a_restart(decision_of, tmp_path):
    path = tmp_path / "decisions" / "cache.json"
    cache = DecisionCache(path)
    cache.apply(decision_of("contoso", stage=2, throttle=5))
    cache.apply(decision_of("fabrikam", stage=3, block=10))
    cache.save()
    reloaded = DecisionCache(path)
    assert len(reloaded) == 2 and reloaded.lookup([SHARED_HOST]).org == "fabrikam"
    assert not (tmp_path / "decisions" / "cache.json.tmp").exists()


def test_a_record_that_is_not_a_decision_changes_nothing(decision_of):
    cache = DecisionCache()
    decision = decision_of("contoso", stage=2, throttle=5)
    assert cache.apply_record(b"contoso/" + SHARED_HOST.encode(), value_of(decision))
    with pytest.raises(AvroDecodeError):
        cache.apply_record(b"contoso/" + SHARED_HOST.encode(), b"not avro")
    assert cache.lookup([SHARED_HOST]) == decision


def value_of(decision):
    return ENFORCEMENT_DECISION.encode(records.decision_record(decision))


def key_of(decision):
    return decision.server_id.encode()


def test_a_tombstone_deletes_its_server_and_leaves_other_orgs_on_the_host(decision_of):
    blocked, throttled = decision_of("contoso", stage=3, block=10), decision_of("fabrikam", stage=2, throttle=5)
    cache = held([blocked, throttled])
    assert cache.apply_record(key_of(blocked), None)
    assert cache.held(blocked.server_id) is None and len(cache) == 1
    # Another org's decision for the same host name is what the host gets now.
    assert cache.lookup([SHARED_HOST]) == throttled
    assert cache.apply_record(key_of(throttled), None)
    assert cache.lookup([SHARED_HOST]) is None, "no decision: the policy server answers DUNNO"
    assert not cache.apply_record(key_of(throttled), None), "a key deleted already changes nothing"


def test_a_server_decided_again_after_its_tombstone_is_held_whatever_its_version(decision_of):
    cache = held([decision_of("contoso", stage=3, block=10, version=4)])
    cache.apply_record(b"contoso/" + SHARED_HOST.encode(), None)
    again = decision_of("contoso", stage=1, version=1)
    assert cache.apply_record(key_of(again), value_of(again))
    assert cache.lookup([SHARED_HOST]) == again


def test_a_deleted_server_does_not_come_back_from_the_file_after_a_restart(decision_of, tmp_path):
    path = tmp_path / "cache.json"
    deleted, kept = decision_of("contoso", stage=3, block=10), decision_of("fabrikam", stage=2, throttle=5)
    cache = DecisionCache(path)
    cache.apply(deleted)
    cache.apply(kept)
    cache.save()
    cache.apply_record(key_of(deleted), None)
    cache.save()
    reloaded = DecisionCache(path)
    assert reloaded.held(deleted.server_id) is None
    assert reloaded.lookup([SHARED_HOST]) == kept


def test_replace_holds_what_the_topic_holds_and_drops_the_rest(decision_of):
    """A server whose tombstone was compacted away while the MTA was stopped is in its file only."""
    gone, kept = decision_of("contoso", stage=3, block=10), decision_of("fabrikam", stage=1)
    elsewhere = decision_of("contoso", stage=2, throttle=5, hostname="mail.contoso.example")
    cache = held([gone, kept])
    topic = records.latest_decisions()
    for decision in (kept, elsewhere):
        topic.add(key_of(decision), value_of(decision))
    cache.replace(topic)
    assert (len(cache), cache.held(gone.server_id)) == (2, None)
    assert cache.lookup([SHARED_HOST]) == kept
    assert cache.lookup(["mail.contoso.example"]) == elsewhere
