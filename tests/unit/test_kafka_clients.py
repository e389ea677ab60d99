import time

import pytest

from pipeline.cli import main
from pipeline.kafka_clients import KafkaUnusable, check_connection
from pipeline.settings import load_settings
from testkit.ports import free_port


@pytest.fixture
def nobody_listening(monkeypatch) -> str:
    """A loopback address where no broker listens, as the process's only bootstrap server."""
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)
    return address


def test_brokers_that_do_not_answer_may_come_back_and_are_waited_for_as_long_as_asked(nobody_listening):
    settings = load_settings()
    with pytest.raises(KafkaUnusable) as raised:
        check_connection(settings)
    assert not raised.value.lasting
    assert str(raised.value).startswith(f"no Kafka broker answers ({nobody_listening}: ")
    started = time.monotonic()
    with pytest.raises(KafkaUnusable):
        check_connection(settings, patience_s=1.5)
    assert 1.5 <= time.monotonic() - started < 5


def test_a_command_that_needs_the_brokers_says_so_in_one_line(nobody_listening, capsys):
    assert main(["decisions"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"patchgate decisions: kafka: no Kafka broker answers ({nobody_listening}: ")
    assert err.count("\n") == 1


def test_commands_without_kafka_do_not_look_for_it(nobody_listening, capsys):
    assert main(["kafka-acls"]) == 0
    assert "kafka-acls.sh --bootstrap-server" in capsys.readouterr().out
