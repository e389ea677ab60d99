"""The wheel, built once for the packaging tests."""
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the package sources (setuptools leaves build/ behind in the
    tree it builds, and a stale build/lib would slip files into later wheels)."""
    source = tmp_path_factory.mktemp("source")
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    for name in ("pyproject.toml", readme):
        shutil.copy(ROOT / name, source / name)
    for folder in ("pipeline", "schemas"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(source)], check=True)
    [built] = dist.glob("patchgate-*.whl")
    return built
