"""`patchgate evaluate`: replay log files offline through the domain rules the stream uses."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TextIO

from pipeline.catalog_files import load_catalog
from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.parsers import msgtrk
from pipeline.domain.replay import replay
from pipeline.domain.report import evaluate_row
from pipeline.edges.shipper import expand, lines_with_positions
from pipeline.settings import Settings

EXIT_OK, EXIT_UNREADABLE = 0, 2


def read_traces(paths: list[str], errors: TextIO) -> tuple[list[MessageTrace], bool]:
    """Every trace in the files; parse errors go to `errors`. The flag says whether every file was read."""
    traces: list[MessageTrace] = []
    all_read = True
    for path in expand(paths):
        header = None
        try:
            lines = list(lines_with_positions(path))
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=errors)
            all_read = False
            continue
        for number, offset, line in lines:
            header, result = msgtrk.parse_line(header, line, SourcePosition(str(path), number, offset))
            if isinstance(result, ParseError):
                print(result, file=errors)
            elif result is not None:
                traces.append(result)
    return traces, all_read


def evaluate(settings: Settings, paths: list[str], at: str | None, out: TextIO | None = None, errors: TextIO | None = None) -> int:
    out, errors = out or sys.stdout, errors or sys.stderr
    as_of = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    traces, all_read = read_traces(paths, errors)
    for decision in replay(traces, settings.policy, load_catalog(), as_of):
        out.write(json.dumps(evaluate_row(decision)) + "\n")
    return EXIT_OK if all_read else EXIT_UNREADABLE
