from datetime import datetime, timezone



def test_arrivals_with_host_name_helo_only_and_time_zone(samples, feed):
    lines = (samples / "exim" / "mainlog").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert [(t.event_time, t.client_hostname, t.client_ip, t.total_bytes, t.sender) for t in traces] == [
        (datetime(2026, 2, 20, 8, 14, 1, tzinfo=timezone.utc), "mail.fabrikam.example", "203.0.113.25", 8342, "billing@fabrikam.example"),
        (datetime(2026, 2, 20, 8, 30, 17, 412000, tzinfo=timezone.utc), None, "192.0.2.201", 1290, None),
    ]
    assert traces[0].message_id == "4472.20260220@app01.fabrikam.example"
    assert [str(e) for e in errors] == ["sample:7: field timestamp: no Exim time stamp (YYYY-MM-DD HH:MM:SS) at the start"]
