"""A checkout reads the schemas from the repository's top-level schemas/ folder; a wheel from inside
the package (tests/packaging/test_wheel.py runs one installed)."""
import json
from pathlib import Path

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from pipeline.contracts import avro
from pipeline.contracts.schema_files import schemas_of
from pipeline.sinks import clickhouse

ROOT = Path(__file__).resolve().parents[3]


def test_a_checkout_reads_the_top_level_schemas_and_keeps_no_second_copy():
    assert Path(str(avro.SCHEMA_DIR)) == ROOT / "schemas" / "avro"
    assert Path(str(clickhouse.DDL_DIR)) == ROOT / "schemas" / "clickhouse"
    assert not (ROOT / "pipeline" / "schemas").exists()


def test_every_avro_file_of_the_top_level_folder_is_known_by_its_fingerprint():
    paths = sorted((ROOT / "schemas" / "avro").rglob("*.avsc"))
    assert any(path.parent.name == "history" for path in paths)
    expected = {bytes.fromhex(fingerprint(to_parsing_canonical_form(parse_schema(json.loads(path.read_text()))),
                                          "CRC-64-AVRO")) for path in paths}
    assert len(expected) == len(paths)
    assert set(avro._writers_by_fingerprint()) == expected


def test_a_wheel_reads_the_schemas_the_build_put_into_the_package(tmp_path):
    package = tmp_path / "site-packages" / "pipeline"
    (package / "schemas" / "avro").mkdir(parents=True)
    # Some other distribution's top-level folder of the same name is not read.
    (tmp_path / "site-packages" / "schemas" / "avro").mkdir(parents=True)
    assert schemas_of(package) == package / "schemas"


def test_a_checkout_reads_the_folder_beside_the_package(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "schemas" / "avro").mkdir(parents=True)
    assert schemas_of(tmp_path / "pipeline") == tmp_path / "schemas"
