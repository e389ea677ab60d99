"""docker-compose.yml cannot run here (no Docker engine): check that it parses and fits the app."""
import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from pipeline.cli import main
from pipeline.settings import SOURCES, load_settings

ROOT = Path(__file__).resolve().parents[3]
KNOWN_VARIABLES = {source[0] for source in SOURCES} | {"PATCHGATE_CONFIG"}


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def patchgate_services():
    """The services that run the patchgate image, by name."""
    return {name: service for name, service in compose()["services"].items() if "build" in service}


def running(command):
    """The names of the services that run `patchgate <command>`."""
    return sorted(name for name, service in patchgate_services().items() if service["command"][0] == command)


def settings_of(service):
    return load_settings(None, environ=service["environment"])


def container_ports(service):
    return {int(mapping.split(":")[-1]) for mapping in service.get("ports", [])}


def dockerfile(service) -> Path:
    return ROOT / service["build"]["context"] / service["build"]["dockerfile"]


def instructions(path: Path, name: str) -> list[list[str]]:
    """The arguments of each `name` instruction of a Dockerfile (continued lines joined)."""
    lines = path.read_text().replace("\\\n", " ").splitlines()
    return [line.split()[1:] for line in lines if line.split()[:1] == [name]]


def test_services_and_images():
    services = compose()["services"]
    assert {"kafka", "clickhouse", "topics", "sink", "mta-policy"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for service in patchgate_services().values():
        assert dockerfile(service).is_file()
        # docker build would fail on a COPY of something the context lacks (as `COPY schemas` did
        # once the schemas moved into the package): only `docker build` would have said so.
        for words in instructions(dockerfile(service), "COPY"):
            for source in (word for word in words[:-1] if not word.startswith("--")):
                assert (ROOT / service["build"]["context"] / source).exists(), f"COPY {source}"


def test_the_image_installs_its_dependencies_from_the_runtime_lock():
    dockerfile = ROOT / "deploy/Dockerfile"
    copied = {}  # path in the image -> path in the build context
    for *sources, target in instructions(dockerfile, "COPY"):
        for source in sources:
            copied[target + Path(source).name if target.endswith("/") else target] = source
    commands = [command.split() for words in instructions(dockerfile, "RUN") for command in " ".join(words).split("&&")]
    installs = [words for words in commands if words[:2] == ["pip", "install"]]
    hashed = [words for words in installs if "--require-hashes" in words]
    assert len(hashed) == 1, f"expected one `pip install --require-hashes -r LOCK`, found {installs}"
    [locked] = hashed
    lock = copied[locked[locked.index("-r") + 1]]
    assert lock == "requirements-runtime.lock" and (ROOT / lock).is_file()
    # The rest, patchgate itself, brings no dependency the lock did not pin.
    assert all("--no-deps" in words for words in installs if words is not locked)


def test_the_image_builds_patchgate_from_every_folder_of_its_wheel():
    # The schemas are not inside the package folder (pyproject.toml maps them into the wheel): an
    # image built without them would find no contracts only when a process starts.
    dockerfile = ROOT / "deploy/Dockerfile"
    commands = [command.split() for words in instructions(dockerfile, "RUN") for command in " ".join(words).split("&&")]
    [project] = [words[-1] for words in commands if words[:2] == ["pip", "install"] and "-r" not in words]
    copied = {target.rstrip("/"): sources for *sources, target in instructions(dockerfile, "COPY")}
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package.split(".")[0] for package in setuptools["packages"]} | set(setuptools["package-dir"].values())
    assert folders >= {"pipeline", "schemas"}
    assert {folder: copied.get(f"{project}/{folder}") for folder in folders} == {folder: [folder] for folder in folders}


def test_the_image_runs_as_an_unprivileged_user_that_owns_the_data_folder():
    dockerfile = ROOT / "deploy/Dockerfile"
    users = instructions(dockerfile, "USER")
    assert users, "the image runs as root: no USER instruction"
    uid, _, gid = users[-1][0].partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) != 0
    [data_dir] = [value.split("=", 1)[1] for words in instructions(dockerfile, "ENV") for value in words
                  if value.startswith("PATCHGATE_DATA_DIR=")]
    made = [" ".join(words) for words in instructions(dockerfile, "RUN") if data_dir in words]
    assert any(f"-o {uid} -g {gid}" in run for run in made), f"{data_dir} is not made the user's: {made}"


def test_three_workers_and_one_sink():
    assert running("worker") == ["worker-1", "worker-2", "worker-3"]
    assert running("sink") == ["sink"]
    assert running("topics") == ["topics"]
    assert running("mta") == ["mta-policy"]


def test_every_command_is_a_patchgate_command(capsys):
    [image_default] = [json.loads(" ".join(words)) for words in instructions(ROOT / "deploy/Dockerfile", "CMD")]
    assert image_default == ["run"]
    for command in sorted({service["command"][0] for service in patchgate_services().values()} | {image_default[0]}):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0, command
        assert f"patchgate {command}" in capsys.readouterr().out


def test_kafka_is_a_single_kraft_node_that_advertises_what_the_services_dial():
    services = compose()["services"]
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = urlparse(kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")[0].replace("PLAINTEXT://", "kafka://"))
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:9093"
    for service in patchgate_services().values():
        host, port = settings_of(service).bootstrap_servers.split(":")
        assert (host, int(port)) == (advertised.hostname, advertised.port)
        assert host in services and int(port) in container_ports(services["kafka"])


def test_every_service_sees_the_same_twelve_partitions_and_consumer_group():
    seen = {(s.partitions, s.topic_prefix, s.app_id) for s in map(settings_of, patchgate_services().values())}
    assert seen == {(12, "", "patchgate")}


def test_environment_holds_only_variables_the_app_reads():
    for name, service in patchgate_services().items():
        assert set(service["environment"]) <= KNOWN_VARIABLES, name
    image_environment = dict(word.split("=", 1) for words in instructions(ROOT / "deploy/Dockerfile", "ENV")
                             for word in words)
    assert image_environment and set(image_environment) <= KNOWN_VARIABLES
    load_settings(None, environ=image_environment)  # raises ConfigError for a value the app refuses


def test_the_sink_uses_the_clickhouse_server_with_its_credentials():
    services = compose()["services"]
    clickhouse = services["clickhouse"]["environment"]
    url = urlparse(settings_of(services["sink"]).clickhouse_dsn)
    assert url.scheme == "http" and url.hostname == "clickhouse"
    assert url.port in container_ports(services["clickhouse"])
    assert (url.username, url.password, url.path.strip("/")) == (
        clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"], clickhouse["CLICKHOUSE_DB"])
    assert services["sink"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_workers_need_neither_the_clickhouse_server_nor_its_url():
    for name in running("worker"):
        worker = compose()["services"][name]
        assert settings_of(worker).clickhouse_url == ""
        assert "clickhouse" not in worker["depends_on"]
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_workers_and_the_sink_are_checked_on_healthz_at_their_web_port():
    for name in [*running("worker"), *running("sink")]:
        service = compose()["services"][name]
        settings = settings_of(service)
        [url] = re.findall(r"http://[^'\"\s]+", " ".join(service["healthcheck"]["test"]))
        checked = urlparse(url)
        assert (checked.hostname, checked.port, checked.path) == ("127.0.0.1", settings.web_port, "/healthz"), name
        # The port is published, so it must listen beyond the container's loopback.
        assert settings.web_host == "0.0.0.0" and settings.web_port in container_ports(service), name


def test_each_process_keeps_its_own_data_volume():
    sources = []
    for name, service in patchgate_services().items():
        if name == "topics":
            continue
        mounts = dict(volume.split(":") for volume in service["volumes"])
        assert str(settings_of(service).data_dir) in mounts.values(), name
        sources += [source for source, target in mounts.items() if target == str(settings_of(service).data_dir)]
    # Two workers in one RocksDB folder would fight over its lock.
    assert len(sources) == len(set(sources)) and set(sources) <= set(compose()["volumes"])


def test_every_dependency_waits_for_something_that_can_happen():
    services = compose()["services"]
    for name, service in services.items():
        for needed, wait in service.get("depends_on", {}).items():
            if wait["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed} to be healthy"
            else:
                assert wait["condition"] == "service_completed_successfully" and needed == "topics", name


def test_host_ports_are_published_once():
    published = [mapping.split(":")[0] for service in compose()["services"].values()
                 for mapping in service.get("ports", [])]
    assert len(published) == len(set(published))


def test_clickhouse_is_checked_as_the_user_the_image_creates():
    service = compose()["services"]["clickhouse"]
    check = " ".join(service["healthcheck"]["test"])
    # The image removes the `default` user when CLICKHOUSE_USER is set: a check without --user fails.
    assert '--user "$$CLICKHOUSE_USER"' in check
    assert set(re.findall(r"\$\$(\w+)", check)) <= set(service["environment"])


def test_the_policy_service_listens_where_postfix_is_told_to_ask():
    service = compose()["services"]["mta-policy"]
    command = service["command"]
    assert command[0] == "mta"
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert port in container_ports(service)
    assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_a_published_policy_port_answers_only_the_networks_it_names():
    service = patchgate_services()["mta-policy"]
    assert container_ports(service) == {10040}
    networks = settings_of(service).mta.client_networks
    assert networks and all(network.is_private for network in networks)
