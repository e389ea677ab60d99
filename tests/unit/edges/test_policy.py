from datetime import UTC, datetime

import pytest

from pipeline.domain.windows import window_offset
from pipeline.edges.decision_cache import DecisionCache
from pipeline.edges.mta import PolicyServer
from pipeline.edges.policy import RequestError, action_for, parse_request, server_names

REQUEST = """request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=198.51.100.13
client_name=unknown
reverse_client_name=ex13mbx01.contoso.example
helo_name=EX13MBX01.contoso.example
sender=ann@contoso.example
recipient=jo@example.net""".splitlines()


def test_request_names_in_order_of_trust():
    request = parse_request(REQUEST)
    assert request["protocol_state"] == "RCPT"
    assert server_names(request) == ["ex13mbx01.contoso.example", "198.51.100.13"]
    with pytest.raises(RequestError):
        parse_request(["no equals sign"])


def at_minute(server_id, relative):
    return datetime(2026, 3, 1, 10, (window_offset(server_id) + relative) % 60, tzinfo=UTC)


def test_actions_follow_the_minute_windows(make_decision):
    decision = make_decision(2, 2)  # stage 2: 5 minutes of throttling per hour
    sid = decision.server_id
    assert action_for(decision, at_minute(sid, 0)) == (
        "450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr.", "throttle")
    assert action_for(decision, at_minute(sid, 5)) == ("DUNNO", None)
    assert action_for(None, at_minute(sid, 0)) == ("DUNNO", None)


def test_server_answers_and_reports_what_it_enforced(make_decision, tmp_path):
    cache = DecisionCache(tmp_path / "cache.json")
    assert cache.apply(make_decision(2, 2)) and not cache.apply(make_decision(1, 1))
    cache.save()
    reloaded = DecisionCache(tmp_path / "cache.json")
    enforced = []
    sid = make_decision(2, 2).server_id
    server = PolicyServer(reloaded, lambda d, kind, now, request: enforced.append((d.version, kind)),
                          clock=lambda: at_minute(sid, 1))
    assert server.answer(REQUEST).startswith("450 4.7.230")
    assert server.answer(["client_address=192.0.2.1"]) == "DUNNO"
    assert server.answer(["garbage"]) == "DUNNO"
    assert enforced == [(2, "throttle")]


def test_received_attributes_are_kept_one_per_line_in_their_order():
    request = parse_request(["helo_name=mx.example", "received=from a by b", "received=from c by d"])
    assert request == {"helo_name": "mx.example", "received": "from a by b\nfrom c by d"}
