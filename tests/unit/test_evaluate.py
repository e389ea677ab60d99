"""`patchgate evaluate` on the bundled samples: a golden test of the output contract."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.evaluate import evaluate
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"


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

    lines = "".join(f"2026-02-20 08:14:0{n} 1vDm9G-0000000F3w{n}-1R0u <= a@b H=mail{n}.fabrikam.example "
                    f"[192.0.2.{n}] S=10\n" for n in range(1, 4)).encode()
    packed = gzip.compress(lines * 2000, mtime=0)
    cut = tmp_path / "mainlog.1.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    code, rows, errors = run([cut])
    assert code == 2 and errors.startswith(f"{cut}: cannot read to its end: ")
    assert [r["server"] for r in rows] == ["mail1.fabrikam.example", "mail2.fabrikam.example", "mail3.fabrikam.example"]


def test_a_line_too_long_is_one_error_and_the_lines_around_it_are_read(tmp_path):
    lines = (SAMPLES / "MSGTRK_EXSE01_20260310.LOG").read_bytes().splitlines(keepends=True)
    log = tmp_path / "MSGTRK_EXSE01.LOG"
    log.write_bytes(b"".join(lines[:6]) + b"\x00" * 2_000_000 + b"\n" + b"".join(lines[6:]))
    code, rows, errors = run([log])
    assert code == 0 and [r["server"] for r in rows] == ["exse01.northwind.example"]
    offset = len(b"".join(lines[:6]))
    assert errors == (f"{log}:7 (byte {offset}): line of 2000000 bytes is longer than formats.max_line_bytes "
                      "(1048576); skipped\n")


def peak_memory_kib(path: Path) -> tuple[int, str]:
    """The most memory `python -m pipeline evaluate path` held (KiB), and what it said on stderr."""
    environ = {name: value for name, value in os.environ.items() if name != "PATCHGATE_CONFIG"}
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "evaluate", str(path)], cwd=ROOT,
                               env={**environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    said = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, said
    return usage.ru_maxrss, said


def test_a_binary_file_of_one_50_mb_line_takes_no_more_memory_than_a_small_file(tmp_path):
    small = tmp_path / "MSGTRK_EXSE01.LOG"
    small.write_bytes((SAMPLES / "MSGTRK_EXSE01_20260310.LOG").read_bytes())
    binary = tmp_path / "misdirected.bin"
    binary.write_bytes(b"\xff" * 50_000_000)
    small_kib, _ = peak_memory_kib(small)
    binary_kib, said = peak_memory_kib(binary)
    assert said == (f"{binary}:1 (byte 0): line of 50000000 bytes is longer than formats.max_line_bytes (1048576); "
                    "skipped\n")
    # Before lines too long were skipped unread, this line took about 390 MB more.
    assert binary_kib - small_kib < 100 * 1024, (small_kib, binary_kib)


def test_rows_held_for_their_writers_fqdn_are_bounded_as_the_stream_bounds_them(tmp_path):
    """Mailbox rows name their writer short: a file holds them back until it names the writer in
    full, but no more row text than the stream's state may carry; the oldest go as they are."""
    from pipeline.streaming.state_bounds import HELD_ROWS_BYTES

    rows = [f"2026-02-10T08:{n // 120:02d}:{n % 120 // 2:02d}.{n % 2 * 500:03d}Z,app1.contoso.example,EX16,RECEIVE,"
            f"<m{n}@contoso.example>,100" for n in range(4000)]
    assert sum(len(row) for row in rows) > HELD_ROWS_BYTES
    log = tmp_path / "MSGTRK2026021008-1.LOG"
    log.write_text("\n".join(["#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039",
                              "#Fields: date-time,client-hostname,server-hostname,event-id,message-id,total-bytes",
                              *rows, "2026-02-10T08:40:00.000Z,EX16.contoso.example,mx.partner.example,SEND,<m0@x>,1"]))
    code, found, errors = run([log])
    assert (code, errors) == (0, "")
    assert [row["server"] for row in found] == ["ex16", "ex16.contoso.example"]
