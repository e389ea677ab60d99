"""Load the Exchange build catalog shipped inside the package (pipeline/domain/data/*.csv)."""
from __future__ import annotations

from functools import cache
from importlib.resources import files

from pipeline.domain.catalog import Catalog


@cache
def load_catalog() -> Catalog:
    return Catalog.from_csv(files("pipeline.domain").joinpath("data/exchange_builds.csv").read_text(encoding="utf-8"))
