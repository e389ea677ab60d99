"""Inputs of the fault campaign: generated tracking logs (bench/corpus.py) as a steady load, and
poison: the real samples repeated with mutated lines, beside files of random bytes.
"""
from __future__ import annotations

import random
from pathlib import Path

import corpus
from fault_rig import ROOT

from pipeline.files import UTF16_BOMS

SAMPLES = ROOT / "tests" / "samples"
SAMPLES_CONFIG = ROOT / "tests" / "samples.toml"
DEMO_SAMPLES = ROOT / "deploy" / "samples"
# Compressed files and UTF-16 exports carry no byte offsets of their own: left out of the poison,
# whose every bad line must be named by file, line and byte.
FIRST_BYTES_WITHOUT_OFFSETS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", *UTF16_BOMS)
SEPARATORS = b",; =:<>[]()"
NOT_LINE_ENDS = bytes(b for b in range(256) if b not in b"\r\n")
# One mutation in this many makes its line longer than a packed record (a few lines in a million).
LONG_LINE_ONE_IN = 4_000


def tracking_logs(lines: int, seed: int, lines_per_server: int = 4000) -> list[corpus.Source]:
    """Tracking logs of lines // lines_per_server servers over 100 days: every vulnerable server walks
    through all stages, so each has several decisions."""
    return corpus.msgtrk(lines, 0, max(2, lines // lines_per_server), random.Random(seed))


def _cut(line: bytes, rng: random.Random) -> bytes:
    return line[:rng.randrange(len(line))]


def _scramble(line: bytes, rng: random.Random) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(len(data))] = rng.choice(NOT_LINE_ENDS)
    return bytes(data)


def _drop_separator(line: bytes, rng: random.Random) -> bytes:
    places = [i for i, b in enumerate(line) if b in SEPARATORS]
    if not places:
        return _cut(line, rng)
    at = rng.choice(places)
    return line[:at] + line[at + 1:]


def _control_bytes(line: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(line) + 1)
    return line[:at] + rng.choice([b"\x00", b"\x1b[2J", b"\x07\x08", b"\xff\xfe", b"\xc3"]) + line[at:]


def _random_line(line: bytes, rng: random.Random) -> bytes:
    return _random_bytes(rng, rng.randint(1, 400))


def _long_line(line: bytes, rng: random.Random) -> bytes:
    return line * (300_000 // max(len(line), 1) + 1)  # beyond a packed record's 256 KiB


MUTATIONS = (_cut, _scramble, _drop_separator, _control_bytes, _random_line)


def _random_bytes(rng: random.Random, size: int) -> bytes:
    return bytes(b for b in rng.randbytes(size * 2) if b not in b"\r\n")[:size]


def _ends(line: bytes) -> tuple[bytes, bytes]:
    body = line.rstrip(b"\r\n")
    return body, line[len(body):]


def mutated(lines: list[bytes], rate: float, rng: random.Random) -> list[bytes]:
    """The lines with about `rate` of them mutated; each keeps its line end."""
    out = []
    for line in lines:
        if rng.random() < rate:
            body, end = _ends(line)
            mutate = _long_line if rng.randrange(LONG_LINE_ONE_IN) == 0 else rng.choice(MUTATIONS)
            line = (mutate(body, rng) if body else _random_line(body, rng)) + (end or b"\n")
        out.append(line)
    return out


def _readable_samples() -> list[Path]:
    return [path for path in sorted([*SAMPLES.rglob("*"), *DEMO_SAMPLES.glob("*")])
            if path.is_file() and not path.read_bytes().startswith(FIRST_BYTES_WITHOUT_OFFSETS)]


def poison(folder: Path, lines: int, seed: int, rate: float = 0.02, per_file: int = 10_000,
           random_files: int = 4) -> list[Path]:
    """About `lines` lines: files of `per_file` lines, each one real sample repeated with `rate` of
    its lines mutated, and `random_files` files of random bytes of a quarter as many lines."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples = _readable_samples()
    noise_lines = random_files * per_file // 4
    paths = []
    for n in range(max(1, (lines - noise_lines) // per_file)):
        sample = samples[n % len(samples)]
        body = sample.read_bytes().splitlines(keepends=True)
        repeated = (body * (per_file // len(body) + 1))[:per_file]
        if not repeated[-1].endswith(b"\n"):
            repeated[-1] += b"\n"
        path = folder / f"{n:04d}-{sample.name}"
        path.write_bytes(b"".join(mutated(repeated, rate, rng)))
        paths.append(path)
    for n in range(random_files):
        noise = b"\n".join(_random_bytes(rng, rng.randint(1, 200)) for _ in range(per_file // 4)) + b"\n"
        path = folder / f"random-{n}.log"
        path.write_bytes(b"x" + noise)  # a first byte that is no compression or UTF-16 signature
        paths.append(path)
    return paths
