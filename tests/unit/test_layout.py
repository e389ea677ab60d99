"""The rooms' import rules (DESIGN.md's layout): the domain imports no other room of the package, and
the contracts and the MTA/shipper side (edges) never import the Faust app (streaming), so that an
MTA host or a shipper host needs the contracts, not the worker. And no module imports one that
imports it back."""
import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"


def imported(room: str) -> dict[str, set[str]]:
    """Module path -> the pipeline modules it imports (at any depth: lazy imports count too)."""
    found = {}
    for path in sorted((PACKAGE / room).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        found[str(path.relative_to(PACKAGE.parent))] = {n for n in names if n.startswith("pipeline.")}
    return found


@pytest.mark.parametrize(("room", "allowed"), [
    ("domain", ("pipeline.domain",)),
    ("contracts", ("pipeline.contracts", "pipeline.domain", "pipeline.settings")),
])
def test_a_room_imports_only_the_rooms_below_it(room, allowed):
    wrong = {module: sorted(n for n in names if not n.startswith(allowed)) for module, names in imported(room).items()}
    assert {module: names for module, names in wrong.items() if names} == {}


def test_the_mta_and_shipper_side_never_imports_the_faust_app():
    wrong = {module: sorted(n for n in names if n.startswith("pipeline.streaming"))
             for module, names in imported("edges").items()}
    assert {module: names for module, names in wrong.items() if names} == {}


def test_no_module_imports_one_that_imports_it_back():
    """Type-only and lazy imports count: two modules that need each other are one concern split in
    two, or hold a third that belongs in neither."""
    modules = {".".join(Path(path).with_suffix("").parts).removesuffix(".__init__"): names
               for path, names in imported("").items()}
    graph = {module: {name for name in names if name in modules and name != module}
             for module, names in modules.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
