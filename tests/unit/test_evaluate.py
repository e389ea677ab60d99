"""`patchgate evaluate` on the bundled samples: a golden test of the output contract."""
import io
import json
from pathlib import Path

from pipeline.evaluate import evaluate
from pipeline.settings import Settings

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"


def run(paths, at=None):
    out, errors = io.StringIO(), io.StringIO()
    code = evaluate(Settings(), [str(p) for p in paths], at, out, errors)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], errors.getvalue()


def test_samples_give_one_sorted_line_per_server():
    code, rows, errors = run([SAMPLES])
    assert (code, errors) == (0, "")
    assert [(r["server"], r["status"], r["stage"]) for r in rows] == [
        ("ex10hub01.contoso.example", "unsupported", 1),
        ("ex13mbx01.contoso.example", "unsupported", 6),
        ("ex16mbx01.contoso.example", "outdated", 3),
        ("ex19mbx01.fabrikam.example", "current", 0),
        ("exse01.northwind.example", "current", 0),
    ]
    ex13 = rows[1]
    assert ex13 == {
        "server": "ex13mbx01.contoso.example", "org": None, "product": "Exchange2013", "build": "15.0.1497.2",
        "status": "unsupported", "first_detected": "2026-01-02T23:53:27.000Z", "stage": 6,
        "throttle_minutes_per_hour": 30, "block_minutes_per_hour": 10, "throttle_enabled_date": "2026-02-01",
        "blocking_enabled_date": "2026-03-03", "next_stage_start_date": "2026-03-23", "recommended_builds": [],
        "reason": "Exchange2013 is out of support since 2023-04-11 (build 15.0.1497.2)",
    }


def test_at_moves_the_evaluation_time():
    _, rows, _ = run([SAMPLES / "MSGTRK_EX13MBX01_20260102.LOG"], at="2026-02-01T23:53:27Z")
    assert [(r["server"], r["stage"], r["next_stage_start_date"]) for r in rows] == [
        ("ex13mbx01.contoso.example", 2, "2026-02-11")]


def test_bad_lines_are_reported_with_file_and_line_and_missing_files_exit_2(tmp_path):
    broken = tmp_path / "MSGTRK_BROKEN.LOG"
    text = (SAMPLES / "MSGTRK_EX19MBX01_20260301.LOG").read_text(encoding="utf-8").splitlines()
    text.insert(6, "2026-03-01T10:00:00.000Z,only,three")
    broken.write_text("\n".join(text), encoding="utf-8")
    code, rows, errors = run([broken, tmp_path / "missing.LOG"])
    assert code == 2
    [bad_line, unreadable] = errors.splitlines()
    assert bad_line.startswith(f"{broken}:7 (byte ")
    assert bad_line.endswith("): 3 values for the 30 columns of #Fields")
    assert unreadable == f"{tmp_path / 'missing.LOG'}: cannot read: No such file or directory"
    assert [r["server"] for r in rows] == ["ex19mbx01.fabrikam.example"]


def test_standard_input_is_read_for_dash(monkeypatch):
    data = (SAMPLES / "MSGTRK_EXSE01_20260310.LOG").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, rows, errors = run(["-"])
    assert (code, errors) == (0, "")
    assert [(r["server"], r["status"]) for r in rows] == [("exse01.northwind.example", "current")]


def test_config_on_the_evaluate_command(tmp_path, capsys):
    from pipeline.cli import main

    config = tmp_path / "policy.toml"
    config.write_text('[policy]\nexemptions = ["ex13mbx01.*"]\n')
    assert main(["evaluate", "--config", str(config), str(SAMPLES / "MSGTRK_EX13MBX01_20260102.LOG")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["stage"], row["reason"]) == (0, "exempt: matches ex13mbx01.*")


def test_a_damaged_compressed_file_gives_its_lines_before_the_damage_and_exit_2(tmp_path):
    import gzip

    lines = "".join(f"2026-02-20 08:14:0{n} 1vDm9G-0000000F3w{n}-1R0u <= a@b H=mail{n}.fabrikam.example [192.0.2.{n}] S=10\n"
                    for n in range(1, 4)).encode()
    packed = gzip.compress(lines * 2000, mtime=0)
    cut = tmp_path / "mainlog.1.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    code, rows, errors = run([cut])
    assert code == 2 and errors.startswith(f"{cut}: cannot read to its end: ")
    assert [r["server"] for r in rows] == ["mail1.fabrikam.example", "mail2.fabrikam.example", "mail3.fabrikam.example"]
