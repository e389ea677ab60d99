"""Where the schema files are: the Avro contracts (avro/) and the ClickHouse DDL (clickhouse/).

They live in the repository's top-level schemas/ folder, where the teams that write to the topics or
build tables on them look. The build puts that folder into the wheel as pipeline/schemas
(pyproject.toml maps the package pipeline.schemas to it), so an installed wheel reads them from
inside the package. A checkout, or an editable install, has no schemas/ inside the package: there
they are read from the folder beside it.

Both are found from the folder of the `pipeline` package this process imported, not by importing
pipeline.schemas: from a checkout, that name could resolve through the editable install of another
checkout and read its schemas.
"""
from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def schema_folder(kind: str) -> Traversable:
    """The folder of one kind of schema file: "avro" or "clickhouse"."""
    return schemas_of(files("pipeline")) / kind


def schemas_of(package: Traversable) -> Traversable:
    """The schemas folder of the `pipeline` package at `package`: inside it when built into a
    wheel, else the checkout's, beside it."""
    built_in = package / "schemas"
    if built_in.is_dir():
        return built_in
    return Path(str(package)).parent / "schemas"
