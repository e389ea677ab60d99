import orjson
import pytest

from pipeline.sinks.clickhouse import connect, create_tables, insert_decisions, insert_enforcement, insert_observations
from pipeline.sinks.report_queries import SERVER_COLUMNS, newest_event, overview, server_page

SERVER_ID = "ex13mbx01.contoso.example"
DAY_MS = 86_400_000
JAN_10 = 1_768_003_200_000  # 2026-01-10T00:00:00Z


def observation(server_id, times):
    messages = {"message_keys": [f"m{t}" for t in times], "message_times": times, "message_sizes": [100] * len(times)}
    return {"server_id": server_id, "build": "15.0.1497.2", "evidence": "received-id",
            "messages": orjson.dumps(messages)}


def attempt(action, at):
    return {"server_id": SERVER_ID, "hostname": SERVER_ID, "org": None, "at": at, "action": action, "stage": 2,
            "decision_version": 2, "client_address": None, "helo_name": None}


@pytest.fixture
def client(tmp_path, make_decision):
    client = connect(f"chdb://{tmp_path}/ch")
    create_tables(client)
    insert_decisions(client, [make_decision(1, 1), make_decision(2, 2)], "t:0:0-1")
    insert_observations(client, [observation(SERVER_ID, [JAN_10, JAN_10 + 60_000, JAN_10 + DAY_MS]),
                                 observation("other.example", [JAN_10 + 2 * DAY_MS])], "o:0:0-1")
    insert_enforcement(client, [(attempt("throttle", "2026-01-11T10:17:00Z"), 0, 0),
                                (attempt("throttle", "2026-01-12T10:18:00Z"), 0, 1),
                                (attempt("block", "2026-01-12T10:19:00Z"), 0, 2)], "e:0:0-2")
    client.command("INSERT INTO control_log (command_id, issued_at, action, target, until_date, reason, issued_by, "
                   "source, outcome, detail) VALUES ('c1', '2026-01-05 00:00:00', 'exempt', '*.contoso.example', "
                   "'2026-02-01', 'migrating', 'ops', 'command', 'applied', '')")
    yield client
    client.close()


def test_overview_has_every_server_with_its_id_and_the_newest_event(client):
    seen = overview(client)
    assert seen["newest_event"] == "2026-01-12T00:00:00.000Z"  # other.example's message, not a decision
    [row] = seen["servers"]
    assert tuple(row) == SERVER_COLUMNS
    assert (row["server_id"], row["stage"], row["deferred"], row["rejected"]) == (SERVER_ID, 2, 2, 1)
    assert [(c["action"], c["target"]) for c in seen["control"]] == [("exempt", "*.contoso.example")]


def test_server_page_reads_history_traffic_with_attempts_per_day_and_controls(client):
    page = server_page(client, SERVER_ID)
    assert [(d["version"], d["stage"], d["throttle_minutes_per_hour"]) for d in page["history"]] == [
        (1, 1, 0), (2, 2, 5)]
    assert page["daily"] == [
        {"day": "2026-01-10", "messages": 2, "deferred": 0, "rejected": 0},
        {"day": "2026-01-11", "messages": 1, "deferred": 1, "rejected": 0},
        {"day": "2026-01-12", "messages": 0, "deferred": 1, "rejected": 1},
    ]
    assert [(c["action"], c["target"], c["until_date"]) for c in page["control"]] == [
        ("exempt", "*.contoso.example", "2026-02-01")]
    assert page["row"]["server"] == SERVER_ID


def test_an_unknown_server_has_no_page_and_quotes_do_not_escape_the_parameter(client):
    assert server_page(client, "x' OR 1=1 --") is None


def test_newest_event_is_none_without_data(tmp_path):
    empty = connect(f"chdb://{tmp_path}/empty")
    create_tables(empty)
    try:
        assert newest_event(empty) is None
    finally:
        empty.close()
