import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.settings import SOURCES


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch):
    """The entry point reads the environment: a developer's or CI's settings must not leak in.
    SOURCES holds every variable, PATCHGATE_SOURCE_IDLE_SECONDS and the PATCHGATE_DLQ_* limits too."""
    for name in [source.env for source in SOURCES] + ["PATCHGATE_CONFIG"]:
        monkeypatch.delenv(name, raising=False)

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "MSGTRK_EXSE01_20260310.LOG"


def test_evaluate_through_the_entry_point(capsys):
    assert main(["evaluate", str(SAMPLE)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["server"] == "exse01.northwind.example"


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required: command" in capsys.readouterr().err


PAGE = Path(__file__).resolve().parent / "domain" / "data" / "build-numbers-and-release-dates.html"


def test_catalog_update_writes_where_evaluate_reads(tmp_path, capsys, monkeypatch):
    catalog = tmp_path / "exchange_builds.csv"
    monkeypatch.setenv("PATCHGATE_CATALOG", str(catalog))
    assert main(["catalog", "update", str(PAGE)]) == 0
    assert "added 3 builds:" in capsys.readouterr().out
    assert "CU15 Oct26SU,15.2.1748.56,2026-10-13" in catalog.read_text()
    assert main(["evaluate", str(SAMPLE)]) == 0
    assert json.loads(capsys.readouterr().out)["recommended_builds"][0] == "15.2.2562.57"


def test_catalog_update_of_an_unreadable_file_exits_2(tmp_path, capsys):
    assert main(["catalog", "update", str(tmp_path / "missing.html"), "--output", str(tmp_path / "out.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_a_broken_configured_catalog_stops_evaluate_with_its_file_and_line(tmp_path, capsys):
    broken = tmp_path / "catalog.csv"
    broken.write_text("product,release,build,release_date,kb\nExchange2019,CU15 Sep26SU,15.2.x,2026-09-08,\n")
    config = tmp_path / "settings.toml"
    config.write_text(f'[catalog]\npath = "{broken}"\n')
    log = tmp_path / "mail.log"
    log.write_text("2026-02-20 08:14:01 1vDm9G-0000000F3wb-1R0u <= a@b H=mail.fabrikam.example [192.0.2.1] S=10\n")
    assert main(["--config", str(config), "evaluate", str(log)]) == 2
    assert capsys.readouterr().err == (f"patchgate evaluate: {broken}:2: field build: '15.2.x' is not a build "
                                       "(fix the file, or run `patchgate catalog update` again)\n")


# Every sub-command with the arguments it needs: each reads the settings before anything else, so
# none of them gets to a broker, a ClickHouse or a file here.
COMMANDS = [
    ["topics"], ["worker"], ["ship", "mail.log"], ["wait"], ["decisions"], ["report"], ["sql", "SELECT 1"],
    ["mta"], ["milter"], ["evaluate", str(SAMPLE)], ["catalog", "update", str(PAGE)],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_every_command_stops_on_a_bad_setting_with_one_line_and_exit_2(command, monkeypatch, capsys):
    monkeypatch.setenv("PATCHGATE_PARTITIONS", "abc")
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "patchgate: config: PATCHGATE_PARTITIONS must be an integer from 1 to 10000, got 'abc'\n")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_every_command_stops_on_a_bad_settings_file(command, tmp_path, capsys):
    config = tmp_path / "site.toml"
    config.write_text("[policy]\nstages = [\n  { start_day = 0, throttle_minutes = 0, block_minutes = 0 },\n"
                      "  { start_day = 30, throttle_minutes = 5, block_minutes = 0 },\n"
                      "  { start_day = 40, throttle_minutes = 10, block_minutes = -5 },\n]\n")
    assert main(["--config", str(config), *command]) == 2
    assert capsys.readouterr().err == (
        "patchgate: config: policy.stages[2].block_minutes must be an integer from 0 to 60, got -5\n")


def test_the_config_option_after_the_command_is_checked_too(tmp_path, capsys):
    config = tmp_path / "site.toml"
    config.write_text("[kafka]\npartitons = 8\n")
    assert main(["evaluate", "--config", str(config), str(SAMPLE)]) == 2
    assert capsys.readouterr().err.startswith("patchgate: config: kafka.partitons is not a setting "
                                              "(known: bootstrap_servers, partitions, topic_prefix, app_id, ")
    missing = tmp_path / "missing.toml"
    assert main(["catalog", "update", str(PAGE), "--config", str(missing)]) == 2
    assert capsys.readouterr().err == f"patchgate: config: {missing} cannot be read: No such file or directory\n"


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in {source.env for source in SOURCES}}
    env["PATCHGATE_DLQ_MAX_RATIO"] = "1.5"
    env.pop("PATCHGATE_CONFIG", None)
    finished = subprocess.run([sys.executable, "-m", "pipeline", "topics"], check=False, env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert (finished.returncode, finished.stdout) == (2, "")
    assert finished.stderr == "patchgate: config: PATCHGATE_DLQ_MAX_RATIO must be a number > 0 and <= 1, got 1.5\n"
