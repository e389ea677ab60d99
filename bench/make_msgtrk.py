"""Write realistic Exchange message tracking logs (MSGTRK*.LOG) for demos and benchmarks, with the
generator the tests use (testkit/msgtrk.py).

    python bench/make_msgtrk.py --demo deploy/samples          # the bundled sample logs
    python bench/make_msgtrk.py --lines 1000000 --out big.LOG  # a large log for throughput runs
"""
from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit.msgtrk import FIELDS_2010, FIELDS_2013_LATER, Server, render  # noqa: E402

DEMO_SERVERS = (
    # Exchange 2013 CU23: out of support since April 2023.
    (Server("ex13mbx01.contoso.example", "198.51.100.13", "15.00.1497.002", tuple(FIELDS_2013_LATER),
            "contoso.example"), "2026-01-02", 80),
    # Exchange 2016 CU23 with the May 2022 SU: below the Exchange2016 baseline.
    (Server("ex16mbx01.contoso.example", "198.51.100.16", "15.01.2507.009", tuple(FIELDS_2013_LATER),
            "contoso.example"), "2026-02-10", 40),
    # Exchange 2019 CU15 with the October 2025 SU: at the baseline, compliant.
    (Server("ex19mbx01.fabrikam.example", "198.51.100.19", "15.02.1748.039", tuple(FIELDS_2013_LATER),
            "fabrikam.example"), "2026-03-01", 20),
    # Exchange Server SE: compliant.
    (Server("exse01.northwind.example", "198.51.100.20", "15.02.2562.029", tuple(FIELDS_2013_LATER),
            "northwind.example"), "2026-03-10", 10),
    # Exchange 2010 writes no build into its tracking log: traffic without a build.
    (Server("ex10hub01.contoso.example", "198.51.100.10", "14.0.0.0", tuple(FIELDS_2010),
            "contoso.example"), "2026-03-15", 5),
)


def write_demo(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)
    for server, start, days in DEMO_SERVERS:
        opened = datetime.fromisoformat(start).replace(tzinfo=UTC)
        name = f"MSGTRK_{server.hostname.split('.')[0].upper()}_{opened:%Y%m%d}.LOG"
        (folder / name).write_bytes(render(server, opened, days, 1, rng).encode("utf-8"))


def write_large(path: Path, lines: int) -> None:
    rng = random.Random(7)
    server = Server("ex16big01.contoso.example", "198.51.100.61", "15.01.2507.039", tuple(FIELDS_2013_LATER),
                    "contoso.example")
    per_day = 500
    days = max(1, lines // (per_day * 2))
    path.write_bytes(render(server, datetime(2026, 1, 1, tzinfo=UTC), days, per_day, rng).encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="write the bundled sample logs into this folder")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.demo:
        write_demo(args.demo)
    if args.out:
        write_large(args.out, args.lines)


if __name__ == "__main__":
    main()
