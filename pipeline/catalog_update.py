"""`patchgate catalog update FILE`: take Microsoft's published build table into the catalog.

Reads the "Exchange Server build numbers and release dates" page (saved as HTML, or its CSV
form), merges its builds into the catalog in use (shipped rows and the configured file) and
writes the result to the configured catalog path, where evaluate and the workers load it.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from pipeline.atomic_write import write_atomically
from pipeline.catalog_files import load_catalog
from pipeline.domain.catalog import builds_csv
from pipeline.domain.catalog_source import CatalogChange, merge, read_published
from pipeline.settings import Settings

EXIT_OK, EXIT_UNREADABLE = 0, 2


def update_catalog(settings: Settings, source: Path, output: Path | None = None,
                   out: TextIO | None = None, errors: TextIO | None = None) -> int:
    out, errors = out or sys.stdout, errors or sys.stderr
    output = output or settings.catalog_file
    try:
        text = source.read_bytes().decode("utf-8-sig")
        published = read_published(text, str(source))
        change = merge(load_catalog(settings.catalog_file).builds, published.builds)
    except OSError as exc:
        print(f"patchgate catalog update: {source}: cannot read: {exc.strerror}", file=errors)
        return EXIT_UNREADABLE
    except UnicodeDecodeError as exc:
        print(f"patchgate catalog update: {source}: not UTF-8 text at byte {exc.start}", file=errors)
        return EXIT_UNREADABLE
    except ValueError as exc:
        print(f"patchgate catalog update: {exc}", file=errors)
        return EXIT_UNREADABLE
    for problem in published.skipped:
        print(f"{problem} (row skipped)", file=errors)
    try:
        # Whole or not at all: a worker starting meanwhile reads the old file or the new one.
        write_atomically(output, builds_csv(change.builds))
    except OSError as exc:
        print(f"patchgate catalog update: {output}: cannot write: {exc.strerror}", file=errors)
        return EXIT_UNREADABLE
    out.write(_summary(change, source, output, len(published.skipped), output == settings.catalog_file))
    return EXIT_OK


def _summary(change: CatalogChange, source: Path, output: Path, skipped: int, in_use: bool) -> str:
    covered = ", ".join(f"{product} {count}" for product, count in sorted(change.covered.items()))
    lines = [f"{source}: {_count(sum(change.covered.values()), 'build')} ({covered or 'none'})"
             + (f", {_count(skipped, 'row')} skipped" if skipped else "")]
    lines.append(f"added {_count(len(change.added), 'build')}" + (":" if change.added else ""))
    lines += [f"  {b.product} {b.release} {b.build} ({b.release_date})" for b in change.added]
    lines.append(f"changed {_count(len(change.changed), 'build')}" + (":" if change.changed else ""))
    for before, after in change.changed:
        edits = [f"{name} {getattr(before, name)!r} -> {getattr(after, name)!r}"
                 for name in ("product", "release", "release_date") if getattr(before, name) != getattr(after, name)]
        lines.append(f"  {after.build}: {', '.join(edits)}")
    lines.append(f"wrote {_count(len(change.builds), 'build')} to {output}: " + (
        "`patchgate evaluate` uses it from now on, running workers after a restart" if in_use
        else "set [catalog] path or PATCHGATE_CATALOG to it to use it"))
    return "\n".join(lines) + "\n"


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"
