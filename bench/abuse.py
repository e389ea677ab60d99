"""Bad input and abuse: each surface of a running pipeline tried with hostile input, with figures.

    python bench/abuse.py [--only web,mta,milter,ship,input,control,notify,stream] [--json FILE] [--folder DIR]

Starts real processes on the shared broker (127.0.0.1:9092, or KAFKA_BOOTSTRAP_SERVERS) with a topic
prefix, consumer groups and data folder of the run's own: `patchgate run` (embedded ClickHouse)
with its web port bound to this machine's address beyond loopback (`hostname -I`) and both tokens
set, fed the sample logs (tests/samples) before the checks; `patchgate mta` and `patchgate milter`
with a 3 s idle timeout, 200 connections at most and clients from 127.0.0.1/32 only; `patchgate
ship`, `evaluate`, `exempt` and `notify` as an operator runs them. Logs and data stay in --folder
(default .bench/abuse-<time>).

    web      the web port: reads without a token or with the viewers', POST /control with the
             viewers' token, /sql as text/plain or a form, with a foreign Host, with bodies that
             are not JSON or 10 MB, a 64 KiB header, SQL that writes, raises its limits or runs over them
    mta      `patchgate mta`: 1,000 idle connections beside an MTA's own, a 1 MiB request line, too
             many attributes, random bytes, a line dripped a byte a second, a client from outside
             client_networks
    milter   `patchgate milter`: packets announcing 0 bytes, one byte over the limit or 4 GiB, random
             bytes, a short option negotiation, a connect packet cut short, half a length prefix left waiting
    ship     `patchgate ship`: symbolic links leading out of the folder shipped, a file named with
             glob characters rotated while the shipper was stopped, a file name that is not UTF-8 (and
             the same run again)
    input    a 50 MiB line of random bytes before a Postfix log through `evaluate` (peak memory
             beside the log alone) and through `ship` to the running worker
    control  `patchgate exempt` of `*`, `*.*` and `?*`, for longer than policy.max_exemption_days,
             until yesterday, without a reason, until a day that does not read
    notify   `patchgate notify` through a relay beyond loopback that offers AUTH but no STARTTLS
             (aiosmtpd in this process)
    stream   a 2 MiB and a 50 MiB line in one record on mail.logs.raw (as a shipper with its size
             limit raised sends it, gzip-compressed so that the broker takes it), valid lines one per
             record after it; when the worker stops on it, it is started again once. Run last

Prints a Markdown table, one row per check (surface, input tried, outcome with figures, holds);
--json writes the same rows as JSON; paths are shown relative to the run's folder. Exits 1 when any
check does not hold. About 80 s on this project's 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import abuse_files
import abuse_operator
import abuse_rig
import abuse_servers
import abuse_web
from abuse_rig import ROOT, SAMPLES, Rig, Row

# In the order they run (whatever --only lists): `stream` may stop the worker, so it comes last.
GROUPS = {
    "web": abuse_web.checks,
    "mta": abuse_servers.mta_checks,
    "milter": abuse_servers.milter_checks,
    "ship": abuse_files.ship_checks,
    "input": abuse_files.input_checks,
    "control": abuse_operator.control_checks,
    "notify": abuse_operator.notify_checks,
    "stream": abuse_files.stream_checks,
}


def markdown(rows: list[Row], folder: Path) -> str:
    lines = ["| surface | input tried | outcome | holds |", "|---|---|---|---|"]
    lines += [f"| {_cell(row.surface)} | {_cell(row.tried)} | {_cell(row.outcome.replace(f'{folder}/', ''))} | "
              f"{'yes' if row.holds else '**no**'} |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text fit for a table cell: printable, no pipes."""
    return "".join(c if c.isprintable() else "?" for c in text).replace("|", "\\|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--folder", type=Path, help="where the run keeps its data and logs")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in GROUPS]
    if unknown:
        parser.error(f"unknown groups {unknown}; choose from {', '.join(GROUPS)}")
    folder = (args.folder or ROOT / ".bench" / f"abuse-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    address = abuse_rig.non_loopback_address()
    if address is None:
        print("no address beyond loopback (hostname -I): the web port is bound to 127.0.0.1, where the token "
              "rules for other machines do not apply", file=sys.stderr)

    started = time.monotonic()
    rig = Rig(folder, address or "127.0.0.1")
    rows: list[Row] = []
    try:
        rig.start_pipeline()
        shipped = rig.patchgate("ship", str(SAMPLES), "--checkpoint", str(folder / "samples-checkpoint.json"))
        if shipped.status != 0:
            raise RuntimeError(f"shipping the samples failed:\n{shipped.stderr}")
        rig.drained()
        print(f"pipeline up, samples shipped and processed in {time.monotonic() - started:.0f} s", file=sys.stderr)
        for name in (name for name in GROUPS if name in chosen):
            group_started = time.monotonic()
            found = GROUPS[name](rig)
            for row in found:
                print(f"{'ok ' if row.holds else 'NO '} {row.surface}: {row.tried}\n    {row.outcome}",
                      file=sys.stderr, flush=True)
            print(f"{name}: {time.monotonic() - group_started:.0f} s", file=sys.stderr, flush=True)
            rows += found
    finally:
        rig.close()
    print(markdown(rows, folder))
    if args.json:
        args.json.write_text(json.dumps([vars(row) for row in rows], indent=2))
    print(f"{len(rows)} checks in {time.monotonic() - started:.0f} s; logs and data: {folder}", file=sys.stderr)
    return 0 if all(row.holds for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
