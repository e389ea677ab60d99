"""Writing a file whole or not at all, and so that it survives a crash: the decision cache of the
MTA side, the shipper's checkpoint, the catalog `patchgate catalog update` writes.

Whoever reads the file (an MTA restarting, a shipper after a crash, a worker starting) finds the
old text or the new, never a part: the new text goes to a temporary file in the same folder (a
rename replaces a file atomically only within one file system), which is synced to the disk
before it takes the file's place; then the folder is synced, since the rename is a change of the
folder that the disk may not hold yet. A write that fails leaves the old file as it was.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Replace the file at `path` (and make its folder, if missing) with `text`, in UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two writers at once each rename a whole file, the later one wins.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temporary.open("x", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
