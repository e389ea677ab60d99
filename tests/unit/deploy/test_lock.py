"""The lock files pin every dependency with its hashes and agree with pyproject.toml.

requirements.lock (runtime, every extra, test tools, pip and setuptools) drives `make venv` and so
CI; requirements-runtime.lock, the worker's part plus the build backend, drives the image;
requirements-edges.lock, the light part, is for the MTA and shipper hosts. A dependency added to
pyproject.toml or bounded anew there without `make lock` fails here, before an install refuses it
(pip --require-hashes stops at a requirement without a pinned, hashed line).
"""
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
EDGES_LOCK = ROOT / "requirements-edges.lock"
# What `make lock` resolves for (its --python-version and --python-platform): markers are read so.
LOCKED_FOR = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def pins(path: Path) -> dict[str, tuple[Version, frozenset[str]]]:
    """name -> (version, hashes) of each requirement of a lock file; fails on any other shape."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found: dict[str, tuple[Version, frozenset[str]]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split() if not line.lstrip().startswith("#") else []
        if not words:
            continue
        pin = PIN.fullmatch(words[0])
        assert pin, f"{path.name}: {words[0]!r} is not name==version"
        hashes = frozenset(words[1:])
        assert hashes and all(HASH.fullmatch(word) for word in hashes), f"{path.name}: {words[0]} without sha256 hashes"
        name = canonicalize_name(pin["name"])
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[name] = (Version(pin["version"]), hashes)
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(*groups: str) -> list[Requirement]:
    """pyproject.toml's requirements: "runtime", "build" or the name of an optional group."""
    project, build = pyproject()["project"], pyproject()["build-system"]
    chosen = {"runtime": project["dependencies"], "build": build["requires"], **project["optional-dependencies"]}
    return [Requirement(text) for group in groups for text in chosen[group]]


def unpinned(requirements: list[Requirement], locked: dict) -> list[str]:
    missing = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate({**LOCKED_FOR, "extra": "test"}):
            continue
        pin = locked.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin[0], prereleases=True):
            missing.append(f"{requirement} (locked: {pin[0] if pin else 'nothing'})")
    return missing


@pytest.mark.parametrize(("path", "at_least"), [(LOCK, 20), (RUNTIME_LOCK, 20), (EDGES_LOCK, 6)],
                         ids=[LOCK.name, RUNTIME_LOCK.name, EDGES_LOCK.name])
def test_every_requirement_is_pinned_with_hashes(path, at_least):
    assert len(pins(path)) >= at_least


def test_the_lock_pins_what_pyproject_declares():
    missing = unpinned(declared("runtime", *pyproject()["project"]["optional-dependencies"]), pins(LOCK))
    assert not missing, f"requirements.lock does not satisfy pyproject.toml: {missing}; run `make lock`"


def test_the_runtime_lock_pins_the_worker_and_the_build_backend():
    missing = unpinned(declared("runtime", "worker", "build"), pins(RUNTIME_LOCK))
    assert not missing, f"requirements-runtime.lock does not satisfy pyproject.toml: {missing}; run `make lock`"


def test_the_edges_lock_pins_the_mta_and_the_shipper_and_nothing_of_the_worker():
    edges = pins(EDGES_LOCK)
    missing = unpinned(declared("runtime", "mta", "shipper"), edges)
    assert not missing, f"requirements-edges.lock does not satisfy pyproject.toml: {missing}; run `make lock`"
    heavy = {"faust-streaming", "mode-streaming", "chdb", "chdb-core", "clickhouse-connect", "pyarrow", "rocksdict"}
    assert not heavy & set(edges), "the MTA and shipper hosts would carry the worker's dependencies"


@pytest.mark.parametrize("path", [RUNTIME_LOCK, EDGES_LOCK], ids=lambda path: path.name)
def test_a_part_lock_is_part_of_the_lock(path):
    # `make lock` resolves it under the full lock as constraints: the image and the light hosts run
    # what CI tested.
    full, part = pins(LOCK), pins(path)
    differing = {name: (pin[0], full.get(name, (None,))[0]) for name, pin in part.items() if full.get(name) != pin}
    assert not differing, f"pinned otherwise in requirements.lock (or not at all): {differing}; run `make lock`"
    assert not {"pytest", "hypothesis", "mypy", "ruff"} & set(part), f"{path.name} would carry test tools"


def test_make_venv_and_so_ci_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements\.lock$", makefile, re.M)
    rules = dict(re.findall(r"^(\S+):(.*)$", makefile, re.M))
    # .ci/run runs `make test`, which needs the installed venv, which is rebuilt when the lock changes.
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert "$(STAMP)" in rules["test"].split() and "$(LOCK)" in rules["$(STAMP)"].split()
    installs = re.findall(r"^\t.*pip install.*$", makefile, re.M)
    assert any("--require-hashes" in line and "-r $(LOCK)" in line for line in installs)
    # Nothing else resolves dependencies: patchgate comes without them, the lock tool pinned.
    for line in installs:
        assert "--require-hashes" in line or "--no-deps" in line or "uv==$(UV_VERSION)" in line, line
