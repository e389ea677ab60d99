"""Golden test: `patchgate evaluate` on a folder mixing every supported format.

Regenerate after a deliberate change with:  PATCHGATE_UPDATE_GOLDEN=1 pytest tests/unit/test_evaluate_golden.py
(that run fails on purpose; review the diff, then run again without the variable).
"""
import io
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.evaluate import evaluate
from pipeline.settings import load_settings

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "golden"
# BSD syslog lines carry no year: their files are dated, as a checkout would date them, on this day.
FILES_DATED = datetime(2026, 11, 27, tzinfo=UTC).timestamp()


def run_on_samples(tmp_path, at=None):
    samples = tmp_path / "samples"
    shutil.copytree(TESTS / "samples", samples)
    for path in samples.rglob("*"):
        os.utime(path, (FILES_DATED, FILES_DATED))
    out, errors = io.StringIO(), io.StringIO()
    code = evaluate(load_settings(TESTS / "samples.toml", environ={}), [str(samples)], at, out, errors)
    return code, out.getvalue(), errors.getvalue().replace(str(samples), "samples")


def check(name, text):
    if os.environ.get("PATCHGATE_UPDATE_GOLDEN"):
        # Writing the file and then comparing against it could never fail: a rewrite is a failure
        # to review (git diff), and the next run without the variable checks it.
        (GOLDEN / name).write_text(text)
        pytest.fail(f"{name} rewritten: review the diff, then run again without PATCHGATE_UPDATE_GOLDEN")
    assert text == (GOLDEN / name).read_text()


def test_every_format_in_one_folder(tmp_path):
    code, out, errors = run_on_samples(tmp_path)
    assert code == 0
    check("evaluate_samples.jsonl", out)
    check("evaluate_samples.stderr", errors)


def test_as_of_an_earlier_time(tmp_path):
    code, out, _ = run_on_samples(tmp_path, at="2026-02-12T00:00:00Z")
    assert code == 0
    check("evaluate_samples_at_2026-02-12.jsonl", out)


def test_output_is_deterministic(tmp_path):
    first = run_on_samples(tmp_path / "a")
    second = run_on_samples(tmp_path / "b")
    assert first == second
