from pipeline.sinks.queries import REPORT_COLUMNS
from pipeline.web.tables import REPORT_SHOWN, json_lines, text_table

ROW = dict.fromkeys(REPORT_COLUMNS) | {
    "server": "ex13mbx01.contoso.example", "product": "Exchange2013", "build": "15.0.1497.2",
    "status": "unsupported", "stage": 6, "recommended_builds": [], "messages_last_24h": 3,
    "first_detected": "2026-01-02T23:53:27.000Z", "org": "<contoso>",
}


def test_text_table_aligns_and_marks_missing_values():
    lines = text_table(REPORT_SHOWN[:5], [ROW, {**ROW, "server": "a.example", "build": None}]).splitlines()
    assert lines[0].split() == ["server", "product", "build", "status", "stage"]
    assert lines[2].split() == ["a.example", "Exchange2013", "-", "unsupported", "6"]
    assert len({line.index("Exchange2013") for line in lines[1:]}) == 1


def test_json_lines():
    assert json_lines([{"a": 1}, {"a": None}]) == '{"a": 1}\n{"a": null}'
