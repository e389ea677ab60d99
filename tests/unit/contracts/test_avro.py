from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from pipeline.contracts.avro import ENFORCEMENT_DECISION, MAGIC, SERVER_OBSERVATION, AvroDecodeError

DECISION: dict[str, Any] = {
    "server_id": "ex13mbx01.contoso.example", "org": None, "hostname": "ex13mbx01.contoso.example",
    "product": "Exchange2013", "build": "15.0.1497.2", "status": "unsupported", "stage": 2,
    "throttle_minutes_per_hour": 5, "block_minutes_per_hour": 0,
    "first_detected": datetime(2026, 1, 2, 23, 53, 27, tzinfo=UTC),
    "throttle_enabled_date": date(2026, 2, 1), "blocking_enabled_date": date(2026, 3, 3),
    "next_stage_start_date": date(2026, 2, 11), "next_stage_throttle_rate": 10, "next_stage_block_rate": 0,
    "recommended_builds": [], "reason": "Exchange2013 is out of support (build 15.0.1497.2)",
    "smtp_reply": "450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr.",
    "decided_at": datetime(2026, 2, 1, 23, 53, 27, tzinfo=UTC), "version": 2, "report_only": False,
    "schedule": [
        {"start": datetime(2026, 1, 2, 23, 53, 27, tzinfo=UTC), "stage": 1, "throttle_minutes_per_hour": 0,
         "block_minutes_per_hour": 0, "paused": False},
        {"start": datetime(2026, 2, 1, 23, 53, 27, tzinfo=UTC), "stage": 2, "throttle_minutes_per_hour": 5,
         "block_minutes_per_hour": 0, "paused": False},
    ],
}


def test_single_object_encoding_round_trip():
    data = ENFORCEMENT_DECISION.encode(DECISION)
    assert data[:2] == MAGIC
    assert data[2:10] == ENFORCEMENT_DECISION.fingerprint
    assert ENFORCEMENT_DECISION.decode(data) == DECISION


def test_garbage_and_foreign_records_are_refused_with_a_reason():
    with pytest.raises(AvroDecodeError, match="not an Avro record in single-object or Confluent framing"):
        ENFORCEMENT_DECISION.decode(b'{"json": true}')
    with pytest.raises(AvroDecodeError, match="unknown writer schema fingerprint"):
        ENFORCEMENT_DECISION.decode(MAGIC + b"\x00" * 8 + b"\x02")
    truncated = ENFORCEMENT_DECISION.encode(DECISION)[:20]
    with pytest.raises(AvroDecodeError, match="cannot read body"):
        ENFORCEMENT_DECISION.decode(truncated)


def test_each_contract_has_its_own_fingerprint():
    assert SERVER_OBSERVATION.fingerprint != ENFORCEMENT_DECISION.fingerprint


def test_records_written_with_earlier_schemas_read_with_the_current_one():
    """ServerObservation v1 had no `software`, v2 no folding (one sighting per record): v3 readers
    get their defaults, and a v2 record becomes an observation of one message."""
    import json

    from pipeline.contracts import records
    from pipeline.contracts.avro import SCHEMA_DIR, AvroContract

    v1_schema = SCHEMA_DIR.joinpath("history", "ServerObservation.v1.avsc").read_text(encoding="utf-8")
    assert "software" not in {f["name"] for f in json.loads(v1_schema)["fields"]}
    one = {
        "server_id": "ex13.contoso.example", "server": "ex13.contoso.example", "org": None,
        "event_time": datetime(2026, 1, 2, tzinfo=UTC), "build": "15.0.1497.2",
        "evidence": "received-id", "message_id": "<m@x>", "total_bytes": 10, "behind_relay": None,
    }
    for version, record in (("v1", one), ("v2", {**one, "software": None})):
        old = AvroContract(f"history/ServerObservation.{version}")
        assert old.fingerprint != SERVER_OBSERVATION.fingerprint
        read = SERVER_OBSERVATION.decode(old.encode(record))
        assert read["software"] is None and read["count"] == 1 and read["first_event_time"] is None
        observation = records.observation_from_record(read)
        assert (observation.first_seen, observation.last_seen, observation.count) == (one["event_time"],) * 2 + (1,)
        assert (observation.message_keys, observation.message_sizes) == (["<m@x>"], [10])


def test_records_without_a_scope_flag_were_in_scope():
    """ServerObservation v3 had no `in_scope` and MessageTrace v1 no `tls_peer`: readers get the defaults."""
    from pipeline.contracts import records
    from pipeline.contracts.avro import MESSAGE_TRACE, AvroContract
    from pipeline.domain.events import ServerObservation

    observation = ServerObservation.once("ex13.contoso.example", "ex13.contoso.example", None,
                                         datetime(2026, 1, 2, tzinfo=UTC), "15.0.1497.2", "received-id", "<m@x>", 10)
    current = records.observation_record(observation)
    v3 = {name: value for name, value in current.items() if name != "in_scope"}
    read = SERVER_OBSERVATION.decode(AvroContract("history/ServerObservation.v3").encode(v3))
    assert records.observation_from_record(read).in_scope is True
    out_of_scope = records.observation_record(replace(observation, in_scope=False))
    read_back = SERVER_OBSERVATION.decode(SERVER_OBSERVATION.encode(out_of_scope))
    assert records.observation_from_record(read_back).in_scope is False
    trace = {"event_time": datetime(2026, 1, 2, tzinfo=UTC), "source_format": "postfix", "source": "f", "line": 1,
             "offset": None, "recipients": [], "received": []}
    assert MESSAGE_TRACE.decode(AvroContract("history/MessageTrace.v1").encode(trace))["tls_peer"] is None


def test_decisions_and_control_outcomes_written_before_report_only_read_as_enforced():
    from pipeline.contracts.avro import AvroContract
    from pipeline.contracts.control import CONTROL_APPLIED

    assert ENFORCEMENT_DECISION.decode(AvroContract("history/EnforcementDecision.v1").encode(DECISION))[
        "report_only"] is False
    applied = {"command": {"command_id": "c1", "action": "pause", "target": "contoso.example",
                           "issued_at": datetime(2026, 2, 1, tzinfo=UTC), "start": None, "days": 3,
                           "until": None, "reason": "r", "issued_by": "ops"},
               "applied": True, "detail": "", "pauses": [], "exemptions": []}
    assert CONTROL_APPLIED.decode(AvroContract("history/ControlApplied.v1").encode(applied))["report_only"] == []


def test_a_decision_written_before_the_schedule_reads_without_one():
    from pipeline.contracts import records
    from pipeline.contracts.avro import AvroContract

    v2 = {name: value for name, value in DECISION.items() if name != "schedule"}
    read = ENFORCEMENT_DECISION.decode(AvroContract("history/EnforcementDecision.v2").single_object(v2))
    assert read == {**v2, "schedule": []}
    assert records.decision_from_record(read).schedule == ()
