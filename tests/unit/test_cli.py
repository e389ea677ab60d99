import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.cli import KAFKA_PATIENCE_S, WORKER_EXTRA_MODULES, WRITES_AVRO, command_parser, main
from pipeline.domain.control import ACTIONS as CONTROL_ACTIONS
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


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser by its full name ("catalog update"), sub-commands of its own below it."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= leaf_commands(sub, f"{prefix}{name} ") or {f"{prefix}{name}": sub}
    return found


def test_every_command_names_its_handler_and_the_kafka_checks_name_only_commands():
    commands = leaf_commands(command_parser())
    assert [name for name, sub in commands.items() if not callable(sub.get_default("handler"))] == []
    tops = {name.split()[0] for name in commands}
    assert {"catalog", *KAFKA_PATIENCE_S, *WRITES_AVRO, *CONTROL_ACTIONS} <= tops
    # The six control commands share one handler: the action is the command's name.
    assert len({commands[action].get_default("handler") for action in CONTROL_ACTIONS}) == 1


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


ROOT = Path(__file__).resolve().parents[2]
# What an MTA or shipper host runs: the entry point, the Kafka clients and their preflight, the
# edges and the contracts, and the operator's commands that need no worker.
LIGHT_MODULES = ["pipeline.cli", "pipeline.kafka_clients", "pipeline.kafka_admin", "pipeline.kafka_acls",
                 "pipeline.catalog_update",
                 *(".".join(path.relative_to(ROOT).with_suffix("").parts)
                   for room in ("edges", "contracts") for path in sorted((ROOT / "pipeline" / room).glob("*.py")))]


def distributions_brought_by(texts: list[str]) -> set[str]:
    """Every distribution these requirements install, theirs included, as this environment has them."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(text) for text in texts]
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra})
                                            for extra in requirement.extras | {""}):
                todo.append(needed)
    return {name for name, _ in seen}


def modules_of(distributions: set[str]) -> set[str]:
    return {module for module, names in importlib.metadata.packages_distributions().items()
            if {canonicalize_name(name) for name in names} & distributions}


def worker_only_modules() -> set[str]:
    """The top-level modules that only the `worker` extra installs (Faust, chdb, Arrow and theirs)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = distributions_brought_by(project["dependencies"])
    worker = distributions_brought_by(project["dependencies"] + project["optional-dependencies"]["worker"])
    return modules_of(worker - base) - modules_of(base)


def test_the_light_hosts_commands_import_without_the_worker_extra():
    """Each module of the worker extra made unimportable, as on a host without it: aiokafka and
    fastavro look for cramjam and backports.zstd and go on without them; patchgate must not stop."""
    heavy = worker_only_modules()
    assert {"faust", "mode", "chdb", "pyarrow", "clickhouse_connect", "rocksdict", "pandas", "cramjam"} <= heavy
    script = ("import json, sys; sys.modules.update(dict.fromkeys(json.loads(sys.argv[1]), None)); "
              f"import {', '.join(LIGHT_MODULES)}; "
              "print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(sorted(heavy))],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert {"pipeline.edges.milter", "pipeline.edges.shipper", "kafka"} <= set(loaded)
    assert [name for name in loaded if name.partition(".")[0] in heavy] == []


def test_the_modules_the_entry_point_names_are_the_worker_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert WORKER_EXTRA_MODULES <= worker_only_modules()
    for text in project["optional-dependencies"]["worker"]:
        assert modules_of({canonicalize_name(Requirement(text).name)}) & WORKER_EXTRA_MODULES, text


# A worker command on a host without the worker extra, and the module it misses first.
WORKER_COMMANDS = [
    (["worker"], "faust"), (["sink"], "faust"), (["run"], "faust"), (["evaluate", str(SAMPLE)], "pyarrow"),
    (["report"], "clickhouse_connect"), (["sql", "SELECT 1"], "clickhouse_connect"),
    (["clickhouse-ddl", "--cluster", "mail"], "clickhouse_connect"),
]


def test_a_worker_command_without_the_worker_extra_names_it_in_one_line(tmp_path):
    # None in sys.modules makes an import fail as a missing module does (the light venv of
    # tests/packaging runs some of these for real).
    script = ("import json, sys; sys.modules.update(dict.fromkeys(json.loads(sys.argv[1]), None)); "
              "from pipeline.cli import main; "
              "print(json.dumps([main(command) for command in json.loads(sys.argv[2])]))")
    env = {name: value for name, value in os.environ.items() if name not in {source.env for source in SOURCES}}
    env.pop("PATCHGATE_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(sorted(WORKER_EXTRA_MODULES)),
                           json.dumps([command for command, _ in WORKER_COMMANDS])],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [2] * len(WORKER_COMMANDS)
    assert done.stderr.splitlines() == [
        f"patchgate {command[0]}: {module} is not installed: this command needs the worker's dependencies "
        "(pip install 'patchgate[worker]')" for command, module in WORKER_COMMANDS]


def test_a_missing_module_of_the_light_install_is_not_taken_for_the_worker_extra(tmp_path):
    # The connection check is skipped: with or without a broker, the command must reach its imports.
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['fastavro'] = None; "
                           "import pipeline.cli as cli; cli._check_kafka = lambda *_: None; cli.main(['decisions'])"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" in done.stderr and "patchgate[worker]" not in done.stderr
