"""Throughput of `patchgate evaluate` on a large Exchange message tracking log.

    python bench/evaluate_throughput.py [--lines 1000000]

Writes the log with bench/make_msgtrk.py (cached in .bench/), then times in one run:
- baseline: the standard library's csv reader over the same lines (the floor for any CSV-based
  parser in Python: no field handling, no domain rules);
- patchgate: reading, format detection, parsing, identification and the policy replay, exactly
  what `patchgate evaluate FILE` does, minus printing.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_msgtrk import write_large  # noqa: E402

from pipeline.evaluate import evaluate  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    log = ROOT / ".bench" / f"MSGTRK_{args.lines}.LOG"
    if not log.exists():
        log.parent.mkdir(exist_ok=True)
        write_large(log, args.lines)
    lines = log.read_bytes().count(b"\n")

    started = time.perf_counter()
    with log.open(encoding="utf-8", newline="") as handle:
        rows = sum(1 for _ in csv.reader(handle))
    baseline = time.perf_counter() - started

    out, errors = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = evaluate(Settings(), [str(log)], None, out, errors)
    elapsed = time.perf_counter() - started
    assert code == 0 and errors.getvalue() == "", errors.getvalue()[:500]

    print(f"file: {log.name}, {lines:,} lines, {log.stat().st_size / 1e6:.0f} MB, "
          f"{len(out.getvalue().splitlines())} server(s)")
    print(f"baseline csv.reader : {baseline:6.2f} s  {rows / baseline:>10,.0f} lines/s")
    print(f"patchgate evaluate  : {elapsed:6.2f} s  {lines / elapsed:>10,.0f} lines/s  "
          f"({elapsed / baseline:.1f}x the baseline)")


if __name__ == "__main__":
    main()
