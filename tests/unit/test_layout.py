"""The rooms' import rules (DESIGN.md's layout): the domain imports no other room of the package, and
the contracts and the MTA/shipper side (edges) never import the Faust app (streaming), so that an
MTA host or a shipper host needs the contracts, not the worker."""
import ast
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
