"""`patchgate worker` with ClickHouse writes that fail on demand, for the fault campaign (bench/faults.py).

    PATCHGATE_FAULT_FLAG=/path/to/flag python bench/fault_worker.py [--config FILE]

Runs the worker exactly as `patchgate worker` does, after wrapping the ClickHouse client's write
path (inserts and commands of clickhouse-connect, whichever engine is behind it). While the flag
file exists, every write fails as its text says:

    error    raises at once, nothing stored (ClickHouse refused the insert)
    hang     stores only after PATCHGATE_FAULT_HANG_S seconds (default 35: past the sink's own
             write timeout), then raises a timeout anyway (the answer was lost, the rows were not)
    mixed    error and hang in turn

Reads (queries) are left alone. Without the flag file the worker behaves as the product's.
"""
from __future__ import annotations

import functools
import itertools
import os
import sys
import threading
import time
from pathlib import Path

from clickhouse_connect.driver import _backendclient, client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

WRITES = ("raw_insert", "data_insert", "insert", "command")
# A write that calls another write (insert -> data_insert) fails once, in the outer call.
_inside = threading.local()
_turns = itertools.count()


class InjectedFault:
    """What the flag file asks for, read on every write so the campaign can switch it at any time."""

    def __init__(self, flag: Path, hang_s: float):
        self.flag, self.hang_s = flag, hang_s

    def mode(self) -> str | None:
        try:
            text = self.flag.read_text().strip() or "error"
        except FileNotFoundError:
            return None
        if text == "mixed":
            return "error" if next(_turns) % 2 == 0 else "hang"
        return text

    def wrap(self, write):
        @functools.wraps(write)
        def faulty(*args, **kwargs):
            if getattr(_inside, "write", False):
                return write(*args, **kwargs)
            _inside.write = True
            try:
                mode = self.mode()
                if mode == "error":
                    raise DatabaseError("injected fault: ClickHouse refused the write")
                if mode == "hang":
                    time.sleep(self.hang_s)
                    write(*args, **kwargs)
                    raise OperationalError(f"injected fault: no answer within {self.hang_s:.0f} s (read timed out)")
                return write(*args, **kwargs)
            finally:
                _inside.write = False

        return faulty


def install(fault: InjectedFault) -> None:
    for cls in (client.Client, _backendclient.SyncBackendClient):
        for name in WRITES:
            if name in vars(cls):
                setattr(cls, name, fault.wrap(vars(cls)[name]))


def main() -> int:
    hang_s = float(os.environ.get("PATCHGATE_FAULT_HANG_S", "35"))
    install(InjectedFault(Path(os.environ["PATCHGATE_FAULT_FLAG"]), hang_s))
    from pipeline.cli import main as patchgate

    return patchgate([*sys.argv[1:], "run"])


if __name__ == "__main__":
    sys.exit(main())
