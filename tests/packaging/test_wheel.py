"""The built wheel carries its data files and works installed, away from the checkout.

The editable install reads schemas, DDL and catalogs from the source tree, so it cannot show a file
missing from the wheel: this test builds the wheel, installs it into a fresh virtual environment and
runs it from a folder outside the repository.

The fresh environment borrows the dependencies of the running one through a .pth file naming its
site-packages: installing them from the registry takes a minute and a gigabyte (chdb, pyarrow). The
running one is installed from requirements.lock (`make venv`), so these are the versions that
requirements-runtime.lock gives the image; a test checks that they are, and that the wheel's own
requirements accept them.
Python does not run .pth files found in a folder a .pth file adds, so the editable install's finder
stays out and `pipeline` can only come from the wheel, which the test checks.
"""
import email
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DATA_SUFFIXES = (".avsc", ".sql", ".csv", ".html")

# Run in both environments: where `pipeline` comes from and whether an editable finder is loaded,
# one Avro round trip, the DDL statements create_tables finds, a report page from its templates.
CHECK_INSTALLED = """
import json, sys, pipeline, pipeline.edges.mta, pipeline.streaming.worker
from pipeline.sinks.clickhouse import create_tables
from pipeline.contracts.avro import DEAD_LETTER, SCHEMA_DIR
from pipeline.web.pages import message_page

class RecordingClient:
    def __init__(self):
        self.statements = []
    def command(self, body):
        self.statements.append(body.strip().splitlines()[0])

record = {"reason": "bad line", "field": None, "source": "mail.logs.raw/0/7", "line": None, "offset": None,
          "via_source": "filebeat.ndjson", "via_line": 3, "via_offset": 250,
          "topic": "mail.logs.raw", "partition": 0, "topic_offset": 7, "raw": b"\\xff"}
decoded = DEAD_LETTER.decode(DEAD_LETTER.encode(record))
client = RecordingClient()
create_tables(client)
print(json.dumps({"pipeline": pipeline.__file__, "schemas": str(SCHEMA_DIR), "round_trip": decoded == record,
                  "ddl": client.statements,
                  "editable_finders": [name for name in sys.modules if name.startswith("__editable__")],
                  "page": message_page("Unknown server", "No server <b>")}))
"""


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed: its bin folder."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True)
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    borrowed = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site_packages) / "dependencies_of_the_test_venv.pth").write_text("".join(f"{p}\n" for p in borrowed))
    return home / "bin"


def run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    # Settings from a developer's or CI's environment would change what evaluate prints.
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("PATCHGATE_") and name not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def in_wheel(wheel: Path, suffixes: tuple[str, ...]) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if name.endswith(suffixes)}


def in_source(suffixes: tuple[str, ...]) -> set[str]:
    """The files the wheel should carry, by their path in it: the package's, and the top-level
    schemas/ as pipeline/schemas (pyproject.toml maps it there)."""
    return ({path.relative_to(ROOT).as_posix() for path in (ROOT / "pipeline").rglob("*") if path.suffix in suffixes}
            | {f"pipeline/{path.relative_to(ROOT).as_posix()}" for path in (ROOT / "schemas").rglob("*")
               if path.suffix in suffixes})


def test_the_wheel_carries_every_data_file(wheel):
    expected = in_source(DATA_SUFFIXES)
    assert {Path(name).suffix for name in expected} == set(DATA_SUFFIXES)
    assert "pipeline/schemas/avro/history/ServerObservation.v1.avsc" in expected
    assert "pipeline/web/templates/layout.html" in expected
    assert in_wheel(wheel, DATA_SUFFIXES) == expected


def test_the_wheel_carries_every_module(wheel):
    # pyproject.toml lists the packages (packages.find cannot see the mapped schemas/): a package
    # left out of the list would be missing here.
    assert in_wheel(wheel, (".py",)) == in_source((".py",))


def test_evaluate_prints_what_the_editable_install_prints(installed, tmp_path):
    arguments = ["evaluate", "--config", str(TESTS / "samples.toml"), str(TESTS / "samples")]
    (tmp_path / "wheel").mkdir()
    (tmp_path / "editable").mkdir()
    from_wheel = run([installed / "patchgate", *arguments], tmp_path / "wheel")
    from_checkout = run([Path(sys.executable).parent / "patchgate", *arguments], tmp_path / "editable")
    assert from_wheel.returncode == 0, from_wheel.stderr
    assert from_checkout.returncode == 0, from_checkout.stderr
    assert len(from_checkout.stdout.splitlines()) > 1
    assert (from_wheel.stdout, from_wheel.stderr) == (from_checkout.stdout, from_checkout.stderr)


def test_worker_and_mta_import_and_read_their_schemas(installed, tmp_path):
    (tmp_path / "wheel").mkdir()
    (tmp_path / "editable").mkdir()
    from_wheel = run([installed / "python", "-c", CHECK_INSTALLED], tmp_path / "wheel")
    from_checkout = run([sys.executable, "-c", CHECK_INSTALLED], tmp_path / "editable")
    assert from_wheel.returncode == 0, from_wheel.stderr
    assert from_checkout.returncode == 0, from_checkout.stderr
    facts, expected = json.loads(from_wheel.stdout), json.loads(from_checkout.stdout)
    assert Path(facts["pipeline"]).is_relative_to(installed.parent)
    assert Path(facts["schemas"]) == Path(facts["pipeline"]).parent / "schemas" / "avro"
    assert expected["editable_finders"] and not facts["editable_finders"]
    assert facts["round_trip"]
    assert "CREATE TABLE IF NOT EXISTS decisions" in expected["ddl"]
    assert facts["ddl"] == expected["ddl"]
    assert "<title>Unknown server</title>" in expected["page"] and "No server &lt;b&gt;" in expected["page"]
    assert facts["page"] == expected["page"]


def test_the_borrowed_dependencies_are_the_locked_ones(wheel):
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / "requirements-runtime.lock").read_text(), re.M)
    locked = {canonicalize_name(name): version for name, version in pins}
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    differing = {name: (version, installed.get(name)) for name, version in locked.items()
                 if installed.get(name) != version}
    assert not differing, f"(locked, installed) here: {differing}; `rm -rf .venv && make venv` installs the lock"
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        requires = email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist")
    # The image's: the base and the worker extra.
    runtime = [r for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate({"extra": "worker"})]
    assert len(runtime) > 10
    refused = [str(r) for r in runtime if not r.specifier.contains(locked.get(canonicalize_name(r.name), "0"))]
    assert not refused, f"the wheel's requirements refuse what requirements-runtime.lock pins: {refused}"
