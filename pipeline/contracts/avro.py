"""Avro single-object encoding (0xC3 0x01, CRC-64-AVRO fingerprint of the writer schema, body).

Every schema file shipped in pipeline/schemas/avro (current and older versions, the latter in
history/) is registered by fingerprint, so a reader always finds the schema a record was written
with and resolves it to the current one.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.types import Schema

# Package data, read through importlib.resources so an installed wheel finds it too.
SCHEMA_DIR = files("pipeline").joinpath("schemas", "avro")
MAGIC = b"\xc3\x01"
_HEADER_SIZE = len(MAGIC) + 8


class AvroDecodeError(ValueError):
    """Bytes that are not a single-object-encoded record of a known schema."""


@cache
def _writers_by_fingerprint() -> dict[bytes, Schema]:
    schemas = {}
    for path in _schema_files(SCHEMA_DIR):
        schema = parse_schema(json.loads(path.read_text(encoding="utf-8")))
        schemas[bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))] = schema
    return schemas


def _schema_files(folder: Traversable) -> Iterator[Traversable]:
    # Traversable has no rglob: walk the folders, in name order so registration is reproducible.
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.is_dir():
            yield from _schema_files(entry)
        elif entry.name.endswith(".avsc"):
            yield entry


class AvroContract:
    """Encoder and decoder for one record type, named after its schema file (e.g. EnforcementDecision).

    `skip` names fields the decoder does not need, in the record and in the records of its arrays:
    fastavro steps over them instead of building Python objects (the policy reads observations
    without their message lists).
    """

    def __init__(self, name: str, skip: tuple[str, ...] = ()):
        self.name = name
        document = json.loads(SCHEMA_DIR.joinpath(f"{name}.avsc").read_text(encoding="utf-8"))
        self.schema = parse_schema(document)
        self.fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO"))
        self.reader = parse_schema(_without(document, skip))

    def encode(self, record: dict) -> bytes:
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(self.fingerprint)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict:
        if len(data) < _HEADER_SIZE or data[:2] != MAGIC:
            raise AvroDecodeError(f"not an Avro single-object record ({len(data)} bytes, starts {data[:2].hex()})")
        writer = _writers_by_fingerprint().get(data[2:_HEADER_SIZE])
        if writer is None:
            raise AvroDecodeError(f"unknown writer schema fingerprint {data[2:_HEADER_SIZE].hex()}")
        try:
            record = schemaless_reader(io.BytesIO(data[_HEADER_SIZE:]), writer, self.reader)
        except Exception as exc:  # fastavro raises several types for truncated or mismatched bodies
            raise AvroDecodeError(f"{self.name}: cannot read body: {exc}") from exc
        if not isinstance(record, dict):  # a writer schema that is not a record, resolved to this one
            raise AvroDecodeError(f"{self.name}: the writer schema is not a record")
        return record


def _without(record: dict, skip: tuple[str, ...]) -> dict:
    """The record schema without the fields named in `skip`, in it and in the records its arrays hold."""
    fields = []
    for field in record["fields"]:
        if field["name"] in skip:
            continue
        kind = field["type"]
        if isinstance(kind, dict) and kind["type"] == "array" and isinstance(kind["items"], dict):
            field = {**field, "type": {**kind, "items": _without(kind["items"], skip)}}
        fields.append(field)
    return {**record, "fields": fields}


MESSAGE_TRACE = AvroContract("MessageTrace")
SERVER_OBSERVATION = AvroContract("ServerObservation")
SERVER_OBSERVATION_TIMES = AvroContract("ServerObservation", skip=("messages",))
ENFORCEMENT_DECISION = AvroContract("EnforcementDecision")
DEAD_LETTER = AvroContract("DeadLetter")
ENFORCEMENT = AvroContract("Enforcement")
