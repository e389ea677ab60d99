"""docker-compose.yml cannot run here (no Docker engine): check that it parses and fits the app."""
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pipeline.settings import SOURCES, load_settings

ROOT = Path(__file__).resolve().parents[3]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def container_ports(service):
    return {int(mapping.split(":")[-1]) for mapping in service.get("ports", [])}


def test_services_and_images():
    services = compose()["services"]
    assert {"kafka", "clickhouse", "topics", "worker", "mta-policy"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for name in ("topics", "worker", "mta-policy"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
        # docker build would fail on a COPY of something the context lacks (as `COPY schemas` did
        # once the schemas moved into the package): only `docker build` would have said so.
        for source in copied(ROOT / build["context"] / build["dockerfile"]):
            assert (ROOT / build["context"] / source).exists(), f"{build['dockerfile']}: COPY {source}"


def copied(dockerfile: Path) -> list[str]:
    """The sources of the Dockerfile's COPY instructions (the last word is the destination)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY":
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def test_kafka_is_a_single_kraft_node_that_advertises_what_the_workers_dial():
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = urlparse(kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")[0].replace("PLAINTEXT://", "kafka://"))
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:9093"
    for name in ("topics", "worker", "mta-policy"):
        settings = load_settings(None, environ=services[name]["environment"])
        host, port = settings.bootstrap_servers.split(":")
        assert (host, int(port)) == (advertised.hostname, advertised.port)
        assert host in services and int(port) in container_ports(services["kafka"])


def test_workers_use_the_clickhouse_server_with_its_credentials():
    services = compose()["services"]
    clickhouse = services["clickhouse"]["environment"]
    settings = load_settings(None, environ=services["worker"]["environment"])
    url = urlparse(settings.clickhouse_dsn)
    assert url.scheme == "http" and url.hostname == "clickhouse"
    assert url.port in container_ports(services["clickhouse"])
    assert (url.username, url.password, url.path.strip("/")) == (
        clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"], clickhouse["CLICKHOUSE_DB"])


def test_worker_environment_holds_only_variables_the_app_reads():
    known = {source[0] for source in SOURCES} | {"PATCHGATE_CONFIG"}
    services = compose()["services"]
    for name in ("topics", "worker"):
        assert set(services[name]["environment"]) <= known
    worker = services["worker"]
    settings = load_settings(None, environ=worker["environment"])
    assert settings.web_port in container_ports(worker)
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_the_policy_service_listens_where_postfix_is_told_to_ask():
    service = compose()["services"]["mta-policy"]
    command = service["command"]
    assert command[0] == "mta"
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert port in container_ports(service)
    assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
