from datetime import UTC, date, datetime

from pipeline.domain.config import Pause, PolicyConfig
from pipeline.sinks.clickhouse import connect, create_tables
from pipeline.sinks.control_log import command_row, config_rows, config_token, insert_control_log


def test_an_outcome_becomes_a_row_with_the_pauses_end():
    applied = {"command": {"command_id": "c1", "action": "pause", "target": "contoso.example",
                           "issued_at": datetime(2026, 11, 28, 9, tzinfo=UTC), "start": None, "days": 30,
                           "until": None, "reason": "migration", "issued_by": "ops@host"},
               "applied": False, "detail": "over budget", "pauses": [], "exemptions": []}
    row = command_row(applied)
    assert (row["start_date"], row["until_date"], row["outcome"], row["source"]) == (
        None, date(2026, 12, 28), "refused", "command")


def test_the_config_files_pauses_and_exemptions_are_rows_too():
    rows = config_rows(PolicyConfig(pauses=(Pause("Contoso.Example", date(2026, 3, 1), 14),),
                                    exemptions=("*.lab.contoso.example",)))
    assert [(r["command_id"], r["action"], r["target"], r["until_date"], r["source"]) for r in rows] == [
        ("config:pause:contoso.example:2026-03-01:14", "pause", "contoso.example", date(2026, 3, 15), "config"),
        ("config:exempt:*.lab.contoso.example", "exempt", "*.lab.contoso.example", None, "config"),
    ]


def test_the_config_files_report_only_settings_are_rows_too():
    rows = config_rows(PolicyConfig(report_only=True, report_only_orgs=("Fabrikam.Example",)))
    assert [(r["command_id"], r["action"], r["target"], r["detail"]) for r in rows] == [
        ("config:report-only:*", "report-only", "*", "policy.report_only (no end)"),
        ("config:report-only:fabrikam.example", "report-only", "fabrikam.example", "policy.report_only_orgs (no end)"),
    ]


def test_the_config_files_rows_are_written_again_when_they_change_and_once_when_not(tmp_path):
    before = config_rows(PolicyConfig(exemptions=("relay1.fabrikam.example",)))
    after = config_rows(PolicyConfig(exemptions=("relay2.fabrikam.example",)))
    assert config_token(before) == config_token(list(reversed(before))) != config_token(after)
    client = connect(f"chdb://{tmp_path}/ch")
    try:
        create_tables(client)
        for rows in (before, before, after):
            insert_control_log(client, rows, config_token(rows))
        assert client.query("SELECT target FROM control_log ORDER BY target").result_rows == [
            ("relay1.fabrikam.example",), ("relay2.fabrikam.example",)]
    finally:
        client.close()
