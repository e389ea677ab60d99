"""`patchgate evaluate`: replay files offline through the parsers and rules the stream uses.

Files are read in chunks; each chunk's lines go through the same parsers, identity and folding
as a batch in the stream, and the folded observations are replayed in event-time order. A line
longer than `formats.max_line_bytes` is an error at its position, skipped unread.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pipeline.catalog_files import load_catalog
from pipeline.domain.aggregate import ObservationBatch
from pipeline.domain.config import FormatConfig, PolicyConfig
from pipeline.domain.events import MessageTrace, ParseError, ServerObservation, TraceGroup, epoch_ms
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers import dispatch
from pipeline.domain.parsers.msgtrk_rows import TrackingRows
from pipeline.domain.replay import replay
from pipeline.domain.report import evaluate_row
from pipeline.files import Chunk, DamagedFile, LongLine, chunks, chunks_of_bytes, expand, modified
from pipeline.settings import Settings
from pipeline.streaming.state_bounds import HELD_ROWS_BYTES

EXIT_OK, EXIT_UNREADABLE = 0, 2
STDIN = "-"


class _Collected:
    """ParseOutput that folds into the current chunk's batch and prints bad lines."""

    def __init__(self, batch: ObservationBatch, errors: TextIO):
        self.batch, self.errors = batch, errors

    def trace(self, trace: MessageTrace) -> None:
        self.batch.add_trace(trace)

    def group(self, group: TraceGroup) -> None:
        self.batch.add_group(group)

    def error(self, error: ParseError) -> None:
        print(error, file=self.errors)


def read_observations(
    paths: list[str], config: PolicyConfig, errors: TextIO, stdin_reference: datetime,
    until: datetime | None = None, keep_messages: bool = False, formats: FormatConfig = FormatConfig(),
) -> tuple[list[ServerObservation], bool]:
    """Every observation the files give (bad lines go to `errors`), and whether every file could be read."""
    observations: list[ServerObservation] = []
    all_read = True

    until_ms = epoch_ms(until) if until else None

    def new_batch() -> ObservationBatch:
        return ObservationBatch(config, until_ms, keep_messages)

    for name in paths:
        if name == STDIN:
            sources = [("<stdin>", chunks_of_bytes(sys.stdin.buffer.read(), formats.max_line_bytes), stdin_reference)]
        else:
            sources = []
            for path in expand([name]):
                try:
                    sources.append((str(path), _read(path, formats.max_line_bytes), modified(path)))
                except OSError as exc:
                    print(f"{path}: cannot read: {exc.strerror}", file=errors)
                    all_read = False
        for source, pieces, reference in sources:
            found, whole = _read_source(source, pieces, reference, new_batch, until_ms, errors, formats)
            observations += found
            all_read = all_read and whole
    return observations, all_read


def _read(path: Path, max_line_bytes: int) -> Iterator[Chunk | LongLine]:
    handle = path.open("rb")  # opened here, so that a file that cannot be read is reported at once

    def read() -> Iterator[Chunk | LongLine]:
        with handle:
            yield from chunks(handle, max_line_bytes=max_line_bytes)

    return read()


def _read_source(source: str, pieces: Iterator[Chunk | LongLine], reference: datetime, new_batch, until_ms: int | None,
                 errors: TextIO, formats: FormatConfig) -> tuple[list, bool]:
    """The source's observations, and whether it was read to its end (a damaged compressed file
    gives what came before the damage)."""
    sources = dispatch.Sources(formats)
    found = []
    whole = True
    try:
        for chunk in pieces:
            if isinstance(chunk, LongLine):
                print(chunk.error(source, formats.max_line_bytes), file=errors)
                continue
            batch = new_batch()
            out = _Collected(batch, errors)
            rows = TrackingRows(until_ms, HELD_ROWS_BYTES)
            run = LineRun.packed(source, chunk.data, chunk.first_line, chunk.first_offset, reference)
            sources.parse(run, out, rows)
            rows.flush(out)
            found += batch.observations()
    except DamagedFile as exc:
        print(f"{source}: cannot read to its end: {exc}", file=errors)
        whole = False
    batch = new_batch()
    sources.finish(_Collected(batch, errors))
    return found + batch.observations(), whole


def evaluate(settings: Settings, paths: list[str], at: str | None, out: TextIO | None = None,
             errors: TextIO | None = None) -> int:
    out, errors = out or sys.stdout, errors or sys.stderr
    as_of = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    # Syslog lines on stdin have no file date to take their year from: use --at, else today.
    stdin_reference = as_of or datetime.now(UTC)
    observations, all_read = read_observations(paths, settings.policy, errors, stdin_reference, as_of,
                                               formats=settings.formats)
    for decision in replay(observations, settings.policy, load_catalog(settings.catalog_file), as_of):
        out.write(json.dumps(evaluate_row(decision)) + "\n")
    return EXIT_OK if all_read else EXIT_UNREADABLE
