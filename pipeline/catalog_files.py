"""Load the Exchange build catalog shipped inside the package (pipeline/domain/data/*.csv).

An operator's newer build list (what `patchgate catalog update` writes) goes on top of it.
"""
from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from pipeline.domain.catalog import Catalog, CatalogBuild, read_builds, read_lifecycle


def load_catalog(configured: Path | None = None) -> Catalog:
    """The shipped catalog, and the builds of `configured` when that file exists.

    The configured file's rows win over shipped rows of the same build; shipped builds it does
    not list still count, so a package upgrade's new builds are not hidden by an older file.
    A broken configured file raises CatalogError naming its file, line and field.
    """
    if configured is None or not configured.is_file():
        return _shipped_catalog()
    builds, lifecycle = _shipped_rows()
    try:
        return Catalog([*builds, *read_builds(configured.read_text(encoding="utf-8"), str(configured))],
                       read_lifecycle(lifecycle))
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{configured}: cannot read the catalog: {exc}") from exc
    except ValueError as exc:
        raise CatalogError(f"{exc} (fix the file, or run `patchgate catalog update` again)") from exc


class CatalogError(ValueError):
    """The configured catalog file cannot be used: commands stop with its file, line and field."""


@cache
def _shipped_catalog() -> Catalog:
    builds, lifecycle = _shipped_rows()
    return Catalog(list(builds), read_lifecycle(lifecycle))


@cache
def _shipped_rows() -> tuple[tuple[CatalogBuild, ...], str]:
    data = files("pipeline.domain").joinpath("data")

    def text(name: str) -> str:
        return data.joinpath(name).read_text(encoding="utf-8")

    builds = [*read_builds(text("exchange_builds.csv")),
              *read_builds(text("exchange_builds_supplemental.csv"), "exchange_builds_supplemental.csv")]
    return tuple(builds), text("exchange_lifecycle.csv")
