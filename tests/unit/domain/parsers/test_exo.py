from datetime import datetime, timezone

from pipeline.files import transcoded


def test_extended_report_in_utf16(samples, feed):
    lines = transcoded((samples / "exo" / "extended_report.utf16le.csv").read_bytes()).data.decode().splitlines()
    traces, errors, _ = feed(lines)
    assert errors == []
    first = traces[0]
    assert first.event_time == datetime(2026, 2, 17, 9, 30, 12, 441000, tzinfo=timezone.utc)
    assert (first.event_id, first.client_ip, first.client_hostname) == ("RECEIVE", "198.51.100.31", "ex13hyb01.contoso.example")
    assert first.connector_id == "Inbound from Contoso on-premises"
    assert first.org == "3f6c1f2e-8a4b-4c7d-9e10-5a6b7c8d9e0f"
    assert traces[2].recipients == ("al@example.net", "kim@example.net")


def test_get_messagetrace_export_csv_with_type_line_and_us_times(samples, feed):
    lines = (samples / "exo" / "get-messagetrace.csv").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert [(t.event_time, t.client_ip, t.org, t.total_bytes) for t in traces] == [
        (datetime(2026, 2, 18, 15, 4, 5, tzinfo=timezone.utc), "203.0.113.60", "contoso.onmicrosoft.com", 15230),
        (datetime(2026, 2, 18, 15, 10, tzinfo=timezone.utc), None, "contoso.onmicrosoft.com", 2048),
    ]
    assert [str(e) for e in errors] == ["sample:5: field received: 'yesterday' is not a time"]


def test_enhanced_summary_recipient_status(samples, feed):
    lines = (samples / "exo" / "enhanced_summary.csv").read_text(encoding="utf-8").splitlines()
    [trace], errors, _ = feed(lines)
    assert errors == []
    assert trace.recipients == ("jo@example.net", "al@example.net")
    assert trace.client_ip == "192.0.2.140"


def test_row_with_wrong_width_is_an_error(feed):
    _, [error], _ = feed(['"date_time_utc","client_ip"', '"2026-02-17T09:30:12Z","1.2.3.4","extra"'])
    assert error.reason == "3 values for the 2 columns of the header row"
