"""`patchgate evaluate`: replay files offline through the parsers and rules the stream uses."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, TextIO

from pipeline.catalog_files import load_catalog
from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.parsers import dispatch, envelope
from pipeline.domain.replay import replay
from pipeline.domain.report import evaluate_row
from pipeline.edges.shipper import expand, lines_with_positions, lines_of_text
from pipeline.settings import Settings

EXIT_OK, EXIT_UNREADABLE = 0, 2
STDIN = "-"


def read_traces(paths: list[str], errors: TextIO, stdin_reference: datetime) -> tuple[list[MessageTrace], bool]:
    """Every trace in the files (parse errors go to `errors`), and whether every file could be read."""
    traces: list[MessageTrace] = []
    all_read = True
    for name in paths:
        if name == STDIN:
            data = sys.stdin.buffer.read()
            sources = [("<stdin>", lines_of_text(data), stdin_reference)]
        else:
            sources = []
            for path in expand([name]):
                try:
                    sources.append((str(path), list(lines_with_positions(path)), _modified(path)))
                except OSError as exc:
                    print(f"{path}: cannot read: {exc.strerror}", file=errors)
                    all_read = False
        for source, lines, reference in sources:
            _read_source(source, lines, reference, traces, errors)
    return traces, all_read


def _read_source(source: str, lines: Iterable, reference: datetime, traces: list, errors: TextIO) -> None:
    # A file of JSON lines (a shipper's output) interleaves several original sources: keep one
    # parser state for each, exactly as the stream does per Kafka key.
    states: dict[str, dict] = {}
    last: dict[str, SourcePosition] = {}
    for number, offset, line in lines:
        unwrapped = envelope.unwrap(line, SourcePosition(source, number, offset))
        if isinstance(unwrapped, ParseError):
            print(unwrapped, file=errors)
            continue
        text, position = unwrapped
        states[position.source], results = dispatch.parse_line(states.get(position.source), text, position, reference)
        last[position.source] = position
        _collect(results, traces, errors)
    for inner, state in states.items():
        _, results = dispatch.finish(state, last[inner])
        _collect(results, traces, errors)


def _collect(results: list, traces: list, errors: TextIO) -> None:
    for result in results:
        if isinstance(result, ParseError):
            print(result, file=errors)
        else:
            traces.append(result)


def _modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def evaluate(settings: Settings, paths: list[str], at: str | None, out: TextIO | None = None, errors: TextIO | None = None) -> int:
    out, errors = out or sys.stdout, errors or sys.stderr
    as_of = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    # Syslog lines on stdin have no file date to take their year from: use --at, else today.
    stdin_reference = as_of or datetime.now(timezone.utc)
    traces, all_read = read_traces(paths, errors, stdin_reference)
    for decision in replay(traces, settings.policy, load_catalog(), as_of):
        out.write(json.dumps(evaluate_row(decision)) + "\n")
    return EXIT_OK if all_read else EXIT_UNREADABLE
