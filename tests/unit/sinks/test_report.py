from datetime import date, datetime, timezone

from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseSink, connect, create_tables
from pipeline.sinks.report import print_report, report_rows


def test_report_shows_the_latest_state_per_server(tmp_path, capsys, make_decision):
    settings = Settings(data_dir=tmp_path)
    client = connect(settings.clickhouse_dsn)
    create_tables(client)
    ClickHouseSink(client).write_decisions([make_decision(1, 1)], "t:0:0-0")
    ClickHouseSink(client).write_decisions([make_decision(2, 2)], "t:0:1-1")
    client.close()

    [row] = report_rows(settings)
    assert (row["server"], row["stage"], row["next_stage_start_date"]) == ("ex13mbx01.contoso.example", 2, date(2026, 2, 11))
    assert row["first_detected"].replace(tzinfo=timezone.utc) == datetime(2026, 1, 2, 23, 53, 27, tzinfo=timezone.utc)
    print_report(settings, as_json=False)
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["server", "product", "build", "status", "stage", "first_detected", "next_stage_start_date"]
    assert line.split() == ["ex13mbx01.contoso.example", "Exchange2013", "15.0.1497.2", "unsupported", "2",
                            "2026-01-02T23:53:27.000Z", "2026-02-11"]
