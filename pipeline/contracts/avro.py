"""Avro records in either of two framings, told apart by their first byte:

- single-object encoding (0xC3 0x01, the CRC-64-AVRO fingerprint of the writer schema, the body);
- the Confluent wire format (0x00, the schema's 4-byte id in a schema registry, the body), which
  ClickHouse's AvroConfluent format, Kafka Connect and most Kafka tools read.

Every schema file in schemas/avro (current and older versions, the latter in history/) is known
by fingerprint, so a reader always finds the schema a single-object record was written with and
resolves it to the current one. Registry ids are known once this process registered the schema
(pipeline.contracts.wire), or fetched from the registry at the first record that carries one.

A contract writes single-object records until `frame_with_id` gives it its registry id.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from functools import cache
from importlib.resources.abc import Traversable

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.types import Schema

from pipeline.contracts.schema_files import schema_folder

SCHEMA_DIR = schema_folder("avro")
MAGIC = b"\xc3\x01"
_HEADER_SIZE = len(MAGIC) + 8
CONFLUENT_MAGIC = b"\x00"
_CONFLUENT_HEADER_SIZE = len(CONFLUENT_MAGIC) + 4

# Writer schemas by registry id, and where to fetch one not known yet (None: no registry set).
_writers_by_id: dict[int, Schema] = {}
_fetch_schema: Callable[[int], dict] | None = None


class AvroDecodeError(ValueError):
    """Bytes that are not a record in either framing, of a schema that can be found."""


def fetch_unknown_ids_with(fetch: Callable[[int], dict] | None) -> None:
    """Have readers fetch the writer schema of a registry id they do not know with `fetch` (id ->
    JSON schema; it may raise): a registry client's `schema`, or None for none. The ids known so
    far are forgotten: another registry numbers its schemas its own way."""
    global _fetch_schema
    _fetch_schema = fetch
    _writers_by_id.clear()


def _writer_of_id(schema_id: int) -> Schema:
    writer = _writers_by_id.get(schema_id)
    if writer is not None:
        return writer
    if _fetch_schema is None:
        raise AvroDecodeError(f"Confluent-framed record of schema id {schema_id}, and no schema registry is set "
                              "to look it up (PATCHGATE_SCHEMA_REGISTRY_URL)")
    try:
        writer = parse_schema(_fetch_schema(schema_id))
    except Exception as exc:  # the registry's errors, or a document fastavro cannot parse
        raise AvroDecodeError(f"schema id {schema_id}: {exc}") from exc
    _writers_by_id[schema_id] = writer
    return writer


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
        self.document = json.loads(SCHEMA_DIR.joinpath(f"{name}.avsc").read_text(encoding="utf-8"))
        self.schema = parse_schema(self.document)
        self.fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO"))
        self.reader = parse_schema(_without(self.document, skip))
        self._single_object_header = MAGIC + self.fingerprint
        self._header = self._single_object_header

    def frame_with_id(self, schema_id: int | None) -> None:
        """Write records in the Confluent wire format with the registry's `schema_id` for this
        contract's schema from now on; None: single-object encoding again."""
        if schema_id is None:
            self._header = self._single_object_header
            return
        _writers_by_id[schema_id] = self.schema
        self._header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")

    def encode(self, record: dict) -> bytes:
        """The record in this process's framing for the topics (see frame_with_id)."""
        return self._framed(self._header, record)

    def single_object(self, record: dict) -> bytes:
        """The record single-object encoded, readable with no registry: for files."""
        return self._framed(self._single_object_header, record)

    def _framed(self, header: bytes, record: dict) -> bytes:
        out = io.BytesIO()
        out.write(header)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict:
        if data[:2] == MAGIC and len(data) >= _HEADER_SIZE:
            writer = _writers_by_fingerprint().get(data[2:_HEADER_SIZE])
            if writer is None:
                raise AvroDecodeError(f"unknown writer schema fingerprint {data[2:_HEADER_SIZE].hex()}")
            body = data[_HEADER_SIZE:]
        elif data[:1] == CONFLUENT_MAGIC and len(data) >= _CONFLUENT_HEADER_SIZE:
            writer = _writer_of_id(int.from_bytes(data[1:_CONFLUENT_HEADER_SIZE], "big"))
            body = data[_CONFLUENT_HEADER_SIZE:]
        else:
            raise AvroDecodeError(f"not an Avro record in single-object or Confluent framing ({len(data)} bytes, "
                                  f"starts {data[:2].hex()})")
        try:
            record = schemaless_reader(io.BytesIO(body), writer, self.reader)
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
