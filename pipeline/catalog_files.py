"""Load the Exchange build catalog shipped inside the package (pipeline/domain/data/*.csv)."""
from __future__ import annotations

from functools import cache
from importlib.resources import files

from pipeline.domain.catalog import Catalog


@cache
def load_catalog() -> Catalog:
    data = files("pipeline.domain").joinpath("data")

    def text(name: str) -> str:
        return data.joinpath(name).read_text(encoding="utf-8")

    return Catalog.from_csv(
        text("exchange_builds.csv"), text("exchange_builds_supplemental.csv"),
        lifecycle_csv=text("exchange_lifecycle.csv"),
    )
