"""Files and lines: `patchgate ship` given links that lead out of its folder and file names with glob
characters or bytes that are not UTF-8; a line far over formats.max_line_bytes through `evaluate`,
`ship` and, in one record, the stream (pipeline.edges.shipper, pipeline.files, pipeline.streaming)."""
from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from abuse_rig import SAMPLES, Finished, Rig, Row, renamed_lines, rss_mb, wait_until

from pipeline import kafka_clients
from pipeline.contracts import topics
from pipeline.contracts.avro import DEAD_LETTER
from pipeline.domain.config import MAX_LINE_BYTES

BIG_LINE = 50 * 1024 * 1024
# The valid lines the checks put after a bad one: a Postfix log of two sending servers.
VALID = SAMPLES / "postfix" / "mx2-mail.log"


def _lines_by_key(rig: Rig) -> Counter:
    """Lines on mail.logs.raw per record key (a file's absolute path for `patchgate ship`)."""
    lines: Counter = Counter()
    for record in rig.records(topics.RAW):
        value = record.value or b""
        lines[(record.key or b"").decode("utf-8", "replace")] += value.count(b"\n") + (not value.endswith(b"\n"))
    return lines


def _shipped(done: Finished) -> int | None:
    found = re.search(r"shipped (\d+) lines", done.stderr)
    return int(found.group(1)) if found else None


def _ship(rig: Rig, name: str, *paths: Path) -> Finished:
    return rig.patchgate("ship", *map(str, paths), "--checkpoint", str(rig.folder / f"{name}-checkpoint.json"))


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit] + (" ..." if len(line) > limit else "")


def ship_checks(rig: Rig) -> list[Row]:
    return [_links_out(rig), _glob_name(rig), _undecodable_name(rig)]


def _links_out(rig: Rig) -> Row:
    folder = rig.folder / "ship-links"
    logs, outside = folder / "logs", folder / "outside"
    logs.mkdir(parents=True)
    outside.mkdir()
    (logs / "mail.log").write_bytes(renamed_lines(SAMPLES / "postfix" / "mail.log", "links"))
    (outside / "secret.log").write_bytes(b"Feb 16 11:20:32 host secret: not to be shipped\n" * 5)
    (logs / "secret.log").symlink_to(outside / "secret.log")
    (logs / "passwd.log").symlink_to("/etc/passwd")
    done = _ship(rig, "links", logs)
    refusals = [line for line in done.stderr.splitlines() if "not shipped: it leads to" in line]
    by_key = _lines_by_key(rig)
    outside_keys = [key for key in by_key if key.startswith(str(outside.resolve())) or key == "/etc/passwd"]
    expected = (logs / "mail.log").read_bytes().count(b"\n")
    outcome = (f"exit {done.status}, shipped {_shipped(done)} lines (mail.log has {expected}); {len(refusals)} lines "
               f"on stderr, e.g. `{refusals[0] if refusals else ''}`; records keyed by the targets on "
               f"mail.logs.raw: {len(outside_keys)}")
    return Row("`patchgate ship`", "a folder holding a log and symbolic links to /etc/passwd and to a file outside "
               "the folder", outcome,
               done.status == 0 and _shipped(done) == expected and len(refusals) == 2 and not outside_keys)


def _glob_name(rig: Rig) -> Row:
    folder = rig.folder / "ship-glob"
    folder.mkdir()
    path = folder / "mail[1].log"
    lines = renamed_lines(VALID, "glob").splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:40]))
    first = _ship(rig, "glob", path)
    with path.open("ab") as handle:
        handle.write(b"".join(lines[40:60]))
    path.rename(folder / "mail[1].log.1")
    path.write_bytes(b"".join(lines[60:]))
    # A name that `mail[1].log*` would match were it taken as a pattern.
    (folder / "mail1.log.1").write_bytes(b"".join(lines[:5]))
    second = _ship(rig, "glob", path)
    on_topic = _lines_by_key(rig)[str(path.resolve())]
    outcome = (f"first run shipped {_shipped(first)} of 40; 20 appended, the file renamed `mail[1].log.1` and a "
               f"new `mail[1].log` of {len(lines) - 60} lines written, a decoy `mail1.log.1` beside it; the second "
               f"run shipped {_shipped(second)} (the rotated file's 20 and the new file's {len(lines) - 60}); "
               f"{on_topic} lines under the file's key on mail.logs.raw, of {len(lines)}")
    return Row("`patchgate ship`", "a file named `mail[1].log`, rotated while the shipper was stopped", outcome,
               first.status == second.status == 0 and _shipped(first) == 40
               and _shipped(second) == len(lines) - 40 and on_topic == len(lines))


def _undecodable_name(rig: Rig) -> Row:
    folder = rig.folder / "ship-names"
    folder.mkdir()
    lines = renamed_lines(VALID, "names")
    names = (b"a.log", b"mail\xff.log", b"z.log")
    for name in names:
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            handle.write(lines)
    done = _ship(rig, "names", folder)
    by_key = _lines_by_key(rig)
    each = lines.count(b"\n")
    plain = {name: by_key[str((folder / name).resolve())] for name in ("a.log", "z.log")}
    error = next((line for line in done.stderr.splitlines() if "Error" in line), "")
    count = _shipped(done)
    outcome = (f"exit {done.status}, `{error or _first_line(done.stderr)}`; lines on mail.logs.raw: a.log "
               f"{plain['a.log']} of {each}, z.log {plain['z.log']} of {each}; "
               + (f"shipped {count} by its own count" if count is not None else "no `shipped N lines` at the end"))
    if done.status != 0:
        # What a retry (or a restarted --follow) does with the checkpoint the failed run left.
        again = _ship(rig, "names", folder)
        by_key = _lines_by_key(rig)
        outcome += (f"; run again: exit {again.status}, a.log {by_key[str((folder / 'a.log').resolve())]} of {each} "
                    f"(checkpoint saved: {(rig.folder / 'names-checkpoint.json').exists()}), z.log "
                    f"{by_key[str((folder / 'z.log').resolve())]}")
    return Row("`patchgate ship`", "a folder with a file whose name is not UTF-8 (`mail\\xff.log`) between two "
               "others", outcome, done.status == 0 and plain == {"a.log": each, "z.log": each})


def _dead_letters(rig: Rig, source: str) -> list[dict]:
    """The dead letters on mail.traces.dlq whose source is `source`."""
    letters = (DEAD_LETTER.decode(record.value) for record in rig.records(topics.DEAD_LETTERS))
    return [letter for letter in letters if letter["source"] == source]


def _binary_line(path: Path, valid: bytes) -> None:
    """A BIG_LINE-byte line of random bytes (no line end in it), then `valid`."""
    line = random.Random(50).randbytes(BIG_LINE).replace(b"\n", b"\0")
    path.write_bytes(line + b"\n" + valid)


def _servers(output: str) -> dict[str, tuple]:
    rows = (json.loads(line) for line in output.splitlines() if line.startswith("{"))
    return {row["server"]: (row["status"], row["stage"]) for row in rows}


def input_checks(rig: Rig) -> list[Row]:
    folder = rig.folder / "input"
    folder.mkdir()
    valid = renamed_lines(VALID, "abuse-input")
    lines = len(valid.splitlines())
    small, big = folder / "valid.log", folder / "binary-line.log"
    small.write_bytes(valid)
    _binary_line(big, valid)
    alone, with_line = rig.patchgate("evaluate", str(small)), rig.patchgate("evaluate", str(big))
    errors = with_line.stderr.strip().splitlines()
    wanted, found = _servers(alone.stdout), _servers(with_line.stdout)
    outcome = (f"exit {with_line.status} in {with_line.seconds:.1f} s, peak RSS {with_line.peak_rss_mb:,.0f} MB (the "
               f"Postfix log alone: {alone.peak_rss_mb:,.0f} MB); {len(errors)} error line: "
               f"`{_first_line(with_line.stderr)}`; {len(found)} servers decided, as for the log alone: "
               f"{found == wanted}")
    rows = [Row("`patchgate evaluate`", f"a {BIG_LINE / 2**20:.0f} MiB line of random bytes, then the {lines} lines of "
                "a Postfix log", outcome,
                with_line.status == 0 and len(errors) == 1 and f"{BIG_LINE} bytes" in errors[0] and found == wanted
                and bool(wanted) and with_line.peak_rss_mb < alone.peak_rss_mb + 2 * MAX_LINE_BYTES / 1e6 + 20)]
    # The shipper's memory for a file of the valid lines alone (other servers' names: not decided here).
    baseline = folder / "valid-baseline.log"
    baseline.write_bytes(renamed_lines(VALID, "abuse-baseline"))
    shipped_alone = _ship(rig, "input-baseline", baseline)
    shipped = _ship(rig, "input", big)
    rig.drained()
    decided = {name: (d.status, d.stage) for name, d in rig.decisions().items()
               if name.endswith(".abuse-input.example")}
    on_topic = _lines_by_key(rig)[str(big.resolve())]
    dead = len(_dead_letters(rig, str(big.resolve())))
    outcome = (f"exit {shipped.status}, peak RSS {shipped.peak_rss_mb:,.0f} MB (the Postfix log alone: "
               f"{shipped_alone.peak_rss_mb:,.0f} MB); stderr: `{_first_line(shipped.stderr)}`; shipped "
               f"{_shipped(shipped)} lines, {on_topic} on mail.logs.raw (the long line is not sent: {dead} dead "
               f"letters); the worker decided {len(decided)} servers of these lines, as evaluate: {decided == wanted}")
    rows.append(Row("`patchgate ship` and the running worker", "the same file", outcome,
                    shipped.status == 0 and _shipped(shipped) == on_topic == lines and decided == wanted
                    and f"{BIG_LINE} bytes" in shipped.stderr
                    and shipped.peak_rss_mb < shipped_alone.peak_rss_mb + 2 * MAX_LINE_BYTES / 1e6 + 20))
    return rows


def stream_checks(rig: Rig) -> list[Row]:
    """A too-long line in one record, as a shipper of one line per record with its size limit raised
    sends it (compressed, so that the broker takes it), then valid lines one per record."""
    assert rig.pipeline is not None
    rows = []
    for size, label in ((2 * 1024 * 1024, "abuse-2m"), (BIG_LINE, "abuse-50m")):
        rows.append(_one_record(rig, size, label))
        if not rig.pipeline.alive():
            break
    return rows


def _one_record(rig: Rig, size: int, label: str) -> Row:
    assert rig.pipeline is not None
    key = f"/abuse/{label}.log"
    valid = renamed_lines(VALID, label).splitlines()
    wanted = _servers(rig.patchgate("evaluate", str(_write(rig.folder / f"{label}.log", b"\n".join(valid) + b"\n")))
                      .stdout)
    # Bytes of every value but the line end, not ASCII: what a binary file gives, and no bare line.
    line = (bytes(range(128, 256)) * (size // 128 + 1))[:size]
    rss_before = rss_mb(rig.pipeline.pid)
    producer = kafka_clients.producer(rig.settings, compression_type="gzip", max_request_size=2 * size)
    try:
        where = producer.send(rig.settings.topic(topics.RAW), key=key.encode(), value=line).get(timeout=120)
        for text in valid:
            producer.send(rig.settings.topic(topics.RAW), key=key.encode(), value=text)
        producer.flush()
    finally:
        producer.close()
    sent_at = time.monotonic()
    tried = (f"a {size / 2**20:.0f} MiB line of binary in one record on mail.logs.raw (gzip, so the broker takes it), "
             f"then {len(valid)} valid lines one per record")
    try:
        rig.drained(timeout=120)
    except (RuntimeError, TimeoutError) as exc:
        return _stopped(rig, tried, exc, sent_at, label, wanted)
    ours = _dead_letters(rig, key)
    decided = {name: (d.status, d.stage) for name, d in rig.decisions().items() if name.endswith(f".{label}.example")}
    letter = ours[0] if ours else {}
    outcome = (f"{len(ours)} dead letter: `{letter.get('reason')}` at {letter.get('topic')}/{letter.get('partition')}/"
               f"{letter.get('topic_offset')} (sent to partition {where.partition}, offset {where.offset}), "
               f"{len(letter.get('raw', b''))} bytes of it kept; the worker decided {len(decided)} servers of the "
               f"valid lines, as evaluate: {decided == wanted}; worker RSS {rss_before:,.0f} → "
               f"{rss_mb(rig.pipeline.pid):,.0f} MB")
    holds = (len(ours) == 1 and (letter.get("partition"), letter.get("topic_offset")) == (where.partition, where.offset)
             and decided == wanted and bool(wanted))
    return Row("the stream (repacker and worker)", tried, outcome, holds)


def _stopped(rig: Rig, tried: str, exc: Exception, sent_at: float, label: str, wanted: dict) -> Row:
    """The worker did not get past the record: how it ended, and whether a restart gets past it."""
    assert rig.pipeline is not None
    stopped = time.monotonic() - sent_at
    status = rig.pipeline.process.poll()
    cause = next((line.strip() for line in reversed(rig.pipeline.text().splitlines())
                  if "Error" in line and ":" in line), str(exc))
    first = (f"`patchgate run` exited {status} {stopped:.0f} s after the record" if status is not None
             else f"`patchgate run` still had the record unprocessed after {stopped:.0f} s")
    rig.pipeline.kill()  # one process at a time on the data folder
    restarted = rig.start("run-again", "run")
    started = time.monotonic()
    exited = wait_until(lambda: not restarted.alive(), 90)
    error = re.search(r"\w+Error", cause)
    same = error is not None and error.group(0) in restarted.text()
    again = (f"started again, it exited {restarted.process.returncode} after {time.monotonic() - started:.0f} s"
             f"{f' with the same {error.group(0)}' if same and error else ''}" if exited
             else "started again, it ran on for 90 s")
    restarted.kill()
    decided = [name for name in rig.decisions() if name.endswith(f".{label}.example")]
    return Row("the stream (repacker and worker)", tried, f"{first} (`{cause[:220]}`); {again}; of the valid lines' "
               f"{len(wanted)} servers {len(decided)} decided", False)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
