import json
from pathlib import Path

import pytest

from pipeline.cli import main

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
