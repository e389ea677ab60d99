from pathlib import Path

from pipeline.settings import Settings, load_settings


def test_defaults(tmp_path):
    settings = load_settings(None, environ={})
    assert settings == Settings()
    assert settings.clickhouse_dsn == f"chdb://{Path('.patchgate/clickhouse').resolve()}"


def test_file_then_environment(tmp_path):
    config = tmp_path / "patchgate.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "kafka:9092"\npartitions = 8\n'
        '[clickhouse]\nurl = "http://default:@clickhouse:8123/default"\n'
        '[policy]\nbuild_window_days = 3\n'
    )
    settings = load_settings(config, environ={"PATCHGATE_PARTITIONS": "2", "PATCHGATE_TOPIC_PREFIX": "t1."})
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.partitions == 2
    assert settings.clickhouse_dsn == "http://default:@clickhouse:8123/default"
    assert settings.policy.build_window_days == 3
    assert settings.topic("mail.decisions") == "t1.mail.decisions"


def test_the_example_file_holds_the_defaults():
    example = Path(__file__).resolve().parents[2] / "deploy" / "patchgate.example.toml"
    assert load_settings(example, environ={}) == Settings()


def test_the_catalog_path_comes_from_the_file_or_the_environment(tmp_path):
    assert Settings(data_dir=tmp_path).catalog_file == tmp_path / "catalog" / "exchange_builds.csv"
    config = tmp_path / "patchgate.toml"
    config.write_text('[catalog]\npath = "/srv/patchgate/exchange_builds.csv"\n')
    assert load_settings(config, environ={}).catalog_file == Path("/srv/patchgate/exchange_builds.csv")
    settings = load_settings(config, environ={"PATCHGATE_CATALOG": "/etc/patchgate/builds.csv"})
    assert settings.catalog_file == Path("/etc/patchgate/builds.csv")
