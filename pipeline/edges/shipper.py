"""Send log files line by line to mail.logs.raw with kafka-python.

Each line travels in the same JSON envelope Filebeat-style shippers use (`message` plus where it
came from), keyed by the file's identity so one file's lines stay in order on one partition.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from kafka import KafkaProducer

from pipeline.settings import Settings
from pipeline.streaming import topics

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def lines_with_positions(path: Path) -> Iterator[tuple[int, int | None, str]]:
    """(line number, byte offset, text) for every line of a file."""
    return lines_of_text(path.read_bytes())


def lines_of_text(data: bytes) -> Iterator[tuple[int, int | None, str]]:
    """(line number, byte offset, text) for every line; UTF-16 exports are decoded whole (no offsets)."""
    if data[:2] in _UTF16_BOMS:
        text = data.decode("utf-16")
        for number, line in enumerate(text.splitlines(), start=1):
            yield number, None, line
        return
    offset = 0
    for number, chunk in enumerate(data.splitlines(keepends=True), start=1):
        yield number, offset, chunk.decode("utf-8", errors="replace").rstrip("\r\n")
        offset += len(chunk)


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def ship(settings: Settings, paths: list[str]) -> int:
    """Send every line of every file; return how many lines the broker acknowledged."""
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=20,
        compression_type="gzip",
    )
    sent = 0
    try:
        for path in expand(paths):
            identity = str(path.resolve())
            key = identity.encode("utf-8")
            for number, offset, line in lines_with_positions(path):
                envelope = {"message": line, "file": identity, "line": number, "offset": offset}
                producer.send(settings.topic(topics.RAW), key=key, value=json.dumps(envelope).encode("utf-8"))
                sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent
