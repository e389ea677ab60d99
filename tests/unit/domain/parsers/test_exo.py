import csv
import json
from datetime import UTC, datetime

from pipeline.domain.config import FormatConfig
from pipeline.domain.events import SourcePosition
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers import exo
from pipeline.files import transcoded


def test_extended_report_in_utf16(samples, feed):
    [chunk] = transcoded((samples / "exo" / "extended_report.utf16le.csv").read_bytes())
    lines = chunk.data.decode().splitlines()
    traces, errors, _ = feed(lines)
    assert errors == []
    first = traces[0]
    assert first.event_time == datetime(2026, 2, 17, 9, 30, 12, 441000, tzinfo=UTC)
    assert (first.event_id, first.client_ip, first.client_hostname) == (
        "RECEIVE", "198.51.100.31", "ex13hyb01.contoso.example")
    assert first.connector_id == "Inbound from Contoso on-premises"
    assert first.org == "3f6c1f2e-8a4b-4c7d-9e10-5a6b7c8d9e0f"
    assert traces[2].recipients == ("al@example.net", "kim@example.net")


def test_get_messagetrace_export_csv_with_type_line_and_us_times(samples, feed):
    lines = (samples / "exo" / "get-messagetrace.csv").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert [(t.event_time, t.client_ip, t.org, t.total_bytes) for t in traces] == [
        (datetime(2026, 2, 18, 15, 4, 5, tzinfo=UTC), "203.0.113.60", "contoso.onmicrosoft.com", 15230),
        (datetime(2026, 2, 18, 15, 10, tzinfo=UTC), None, "contoso.onmicrosoft.com", 2048),
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


class _Collected:
    def __init__(self):
        self.traces, self.errors = [], []

    def trace(self, trace):
        self.traces.append(trace)

    def error(self, error):
        self.errors.append(error)


def _parse_runs(runs, formats=FormatConfig(), source="trace.csv"):
    """Feed runs of lines to the parser as the stream does, one state kept between them."""
    state, out, first = exo.ExportState(), _Collected(), 1
    for lines in runs:
        positions = [SourcePosition(source, first + i) for i in range(len(lines))]
        exo.parse(state, LineRun.of_lines(source, lines, positions, None), 0, len(lines), out, formats)
        state = exo.ExportState.from_json(json.loads(json.dumps(state.to_json())))  # the stream keeps it in a table
        first += len(lines)
    return out.traces, out.errors, state


def _en_gb_lines(samples):
    return (samples / "exo" / "get-messagetrace.en-gb.csv").read_text().splitlines()


def _selected(lines, columns):
    """The export as `Select-Object <columns> | Export-Csv` writes it (no query window columns)."""
    rows = list(csv.DictReader(lines[1:]))
    kept = ['#TYPE Selected.Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace',
            ",".join(f'"{c}"' for c in columns)]
    return kept + [",".join(f'"{row[c]}"' for c in columns) for row in rows]


_SELECTED = ("Received", "SenderAddress", "RecipientAddress", "FromIP", "ToIP", "Size", "MessageId")


def test_an_en_gb_export_is_read_day_first(samples, feed):
    traces, errors, state = feed(_en_gb_lines(samples))
    assert errors == []
    assert [t.event_time for t in traces] == [
        datetime(2026, 2, 13, 16, 41, 9, tzinfo=UTC), datetime(2026, 2, 13, 15, 2, 7, tzinfo=UTC),
        datetime(2026, 2, 12, 8, 30, 55, tzinfo=UTC), datetime(2026, 2, 11, 17, 59, 40, tzinfo=UTC),
        datetime(2026, 2, 10, 9, 12, 44, tzinfo=UTC)]
    assert (traces[3].client_ip, traces[3].server_ip, traces[3].org) == (
        "198.51.100.112", "203.0.113.25", "fabrikam.onmicrosoft.com")
    # The query window's EndDate (16/02/2026) told the order on the first row.
    assert state.dates.to_json() == {"order": "day-first", "line": 3, "stamp": "13/02/2026 16:41:09"}


def test_ambiguous_dates_wait_for_a_later_row_of_the_run_that_tells(samples):
    lines = _selected(_en_gb_lines(samples), _SELECTED)
    # Oldest first: the first three rows' dates (10/02, 11/02, 12/02) fit either order.
    lines[2:] = lines[:1:-1]
    traces, errors, state = _parse_runs([lines])
    assert errors == []
    assert [t.event_time.day for t in traces] == [10, 11, 12, 13, 13]
    assert state.dates.to_json() == {"order": "day-first", "line": 6, "stamp": "13/02/2026 15:02:07"}


def test_a_file_whose_dates_never_tell_is_read_month_first_with_one_error_naming_the_setting(samples):
    lines = [line for line in _selected(_en_gb_lines(samples), _SELECTED) if "13/02/2026" not in line]
    traces, [error], state = _parse_runs([lines[:4], lines[4:]])
    assert [t.event_time.date().isoformat() for t in traces] == ["2026-12-02", "2026-11-02", "2026-10-02"]
    assert str(error).startswith("trace.csv:3: field received: the file's dates fit month-first and day-first alike "
                                 "(as '12/02/2026 08:30:55') and none tells which: read month-first")
    assert 'set exo_date_order = "day-first" in the [formats] settings' in error.reason
    assert state.dates.to_json() == {"order": "month-first", "assumed": True}
    # Told, the same file reads day-first without complaint.
    traces, errors, _ = _parse_runs([lines], FormatConfig(exo_date_order="day-first"))
    assert errors == [] and [t.event_time.day for t in traces] == [12, 11, 10]


def test_a_date_that_contradicts_the_files_order_is_an_error_on_its_row(samples):
    lines = _en_gb_lines(samples)
    lines.append(lines[-1].replace('"10/02/2026 09:12:44"', '"2/18/2026 3:04:05 PM"').replace('"4"', '"5"'))
    traces, [error], _ = _parse_runs([lines[:4], lines[4:]])
    assert len(traces) == 5
    assert str(error) == ("trace.csv:8: field received: '2/18/2026 3:04:05 PM' is month-first, but the file's dates "
                          "are day-first (line 3: '13/02/2026 16:41:09')")


def test_an_order_assumed_in_one_run_and_contradicted_in_a_later_one_is_reported(samples):
    lines = _selected(_en_gb_lines(samples), _SELECTED)
    lines[2:] = lines[:1:-1]  # oldest first
    traces, errors, state = _parse_runs([lines[:5], lines[5:]])
    assert [t.event_time.day for t in traces] == [2, 2, 2, 13, 13]
    assert [e.position.line for e in errors] == [3, 6]
    assert errors[1].reason == ("'13/02/2026 15:02:07' is day-first, but earlier rows of the file, whose dates fit "
                                'either order, were read month-first: set exo_date_order = "day-first" in the '
                                "[formats] settings and read the file again")
    assert state.dates.order == "day-first"


def test_the_setting_rules_and_dates_that_do_not_fit_it_are_errors(samples):
    traces, errors, _ = _parse_runs([_en_gb_lines(samples)], FormatConfig(exo_date_order="month-first"))
    assert [t.event_time.month for t in traces] == [12, 11, 10]
    assert [str(e) for e in errors] == [
        f"trace.csv:{n}: field received: '13/02/2026 {t}' is not a month-first date (formats.exo_date_order)"
        for n, t in ((3, "16:41:09"), (4, "15:02:07"))]


def test_us_times_with_twelve_oclock_and_the_narrow_space_of_dotnet_on_icu():
    header = '"Received","SenderAddress","RecipientAddress","FromIP"'
    rows = [f'"{stamp}","a@wingtip.example","b@contoso.example","203.0.113.60"' for stamp in (
        "2/18/2026 12:04:05 AM", "2/18/2026 12:04:05 PM", "2/18/2026 8:14:03\u202fPM", "2/18/2026 13:04:05 PM")]
    traces, [error], _ = _parse_runs([[header, *rows]])
    assert [t.event_time.hour for t in traces] == [0, 12, 20]
    assert error.reason == "'2/18/2026 13:04:05 PM' is not a time"


def test_dotted_dates_of_german_and_other_cultures_are_day_first(feed):
    header = ('"Received","SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageId",'
              '"MessageTraceId"')
    row = ('"10.02.2026 14:03:22","a@contoso.example","b@example.net","Hallo","Delivered","","198.51.100.7","1234",'
           '"<m1@contoso.example>","9b2c7f0e-1d2e-4c5b-8a9f-000000000001"')
    [trace], errors, _ = feed([header, row])
    assert errors == [] and trace.event_time == datetime(2026, 2, 10, 14, 3, 22, tzinfo=UTC)
