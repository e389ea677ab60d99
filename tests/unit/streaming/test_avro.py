from datetime import date, datetime, timezone

import pytest

from pipeline.streaming.avro import ENFORCEMENT_DECISION, MAGIC, SERVER_OBSERVATION, AvroDecodeError

DECISION = {
    "server_id": "ex13mbx01.contoso.example", "org": None, "hostname": "ex13mbx01.contoso.example",
    "product": "Exchange2013", "build": "15.0.1497.2", "status": "unsupported", "stage": 2,
    "throttle_minutes_per_hour": 5, "block_minutes_per_hour": 0,
    "first_detected": datetime(2026, 1, 2, 23, 53, 27, tzinfo=timezone.utc),
    "throttle_enabled_date": date(2026, 2, 1), "blocking_enabled_date": date(2026, 3, 3),
    "next_stage_start_date": date(2026, 2, 11), "next_stage_throttle_rate": 10, "next_stage_block_rate": 0,
    "recommended_builds": [], "reason": "Exchange2013 is out of support (build 15.0.1497.2)",
    "smtp_reply": "450 4.7.230 Connecting server version is out-of-date; connection throttled for 5 mins/hr.",
    "decided_at": datetime(2026, 2, 1, 23, 53, 27, tzinfo=timezone.utc), "version": 2,
}


def test_single_object_encoding_round_trip():
    data = ENFORCEMENT_DECISION.encode(DECISION)
    assert data[:2] == MAGIC
    assert data[2:10] == ENFORCEMENT_DECISION.fingerprint
    assert ENFORCEMENT_DECISION.decode(data) == DECISION


def test_garbage_and_foreign_records_are_refused_with_a_reason():
    with pytest.raises(AvroDecodeError, match="not an Avro single-object record"):
        ENFORCEMENT_DECISION.decode(b'{"json": true}')
    with pytest.raises(AvroDecodeError, match="unknown writer schema fingerprint"):
        ENFORCEMENT_DECISION.decode(MAGIC + b"\x00" * 8 + b"\x02")
    truncated = ENFORCEMENT_DECISION.encode(DECISION)[:20]
    with pytest.raises(AvroDecodeError, match="cannot read body"):
        ENFORCEMENT_DECISION.decode(truncated)


def test_each_contract_has_its_own_fingerprint():
    assert SERVER_OBSERVATION.fingerprint != ENFORCEMENT_DECISION.fingerprint


def test_a_record_written_with_the_previous_schema_reads_with_the_current_one():
    """ServerObservation v1 (schemas/avro/history) had no `software`; v2 readers get its default."""
    import json
    from pathlib import Path

    from pipeline.streaming.avro import SCHEMA_DIR, AvroContract

    v1_path = Path(SCHEMA_DIR) / "history" / "ServerObservation.v1.avsc"
    assert "software" not in {f["name"] for f in json.loads(v1_path.read_text())["fields"]}
    v1 = AvroContract("history/ServerObservation.v1")
    assert v1.fingerprint != SERVER_OBSERVATION.fingerprint
    written = v1.encode({
        "server_id": "ex13.contoso.example", "server": "ex13.contoso.example", "org": None,
        "event_time": datetime(2026, 1, 2, tzinfo=timezone.utc), "build": "15.0.1497.2",
        "evidence": "received-id", "message_id": None, "total_bytes": 10, "behind_relay": None,
    })
    record = SERVER_OBSERVATION.decode(written)
    assert record["software"] is None and record["build"] == "15.0.1497.2"
