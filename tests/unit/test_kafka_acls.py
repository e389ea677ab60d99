import json
import shlex

from pipeline.cli import main
from pipeline.kafka_acls import ROLES, grants, parse_principals
from pipeline.settings import Settings

SETTINGS = Settings(topic_prefix="site.", app_id="pg")


def rights(role: str, web_control: bool = False) -> set[tuple[str, str, str]]:
    """(operation, resource type, name) of one role."""
    return {(binding["operation"], binding["resource_type"], binding["resource_name"])
            for grant in grants(SETTINGS, web_control=web_control) if grant.role == role
            for binding in grant.bindings()}


def test_only_the_operator_writes_mail_control_and_only_the_worker_writes_mail_decisions():
    writers = {role for role in ROLES if ("Write", "topic", "site.mail.control") in rights(role)}
    assert writers == {"operator"}
    assert {role for role in ROLES if ("Write", "topic", "site.mail.decisions") in rights(role)} == {"worker"}
    assert ("Write", "topic", "site.mail.control") in rights("sink", web_control=True)


def test_the_edges_get_their_own_topics_and_nothing_else():
    assert rights("shipper") == {("Read", "topic", "site.mail.logs.raw"), ("Write", "topic", "site.mail.logs.raw")}
    assert rights("mta") == {("Read", "topic", "site.mail.decisions"), ("Write", "topic", "site.mail.enforcement"),
                             ("Write", "topic", "site.mail.traces")}
    assert rights("notify") == {("Read", "topic", "site.mail.decisions"), ("Create", "topic", "site.mail.notices"),
                                ("Read", "topic", "site.mail.notices"), ("Write", "topic", "site.mail.notices")}


def test_the_worker_and_the_sink_read_in_their_own_groups_and_create_nothing():
    worker, sink = rights("worker"), rights("sink")
    assert {r for r in worker if r[1] == "group"} == {("Read", "group", "pg"), ("Read", "group", "pg-repack")}
    # Its repacker reads what the shippers write; the shippers alone write there.
    assert ("Read", "topic", "site.mail.logs.raw") in worker and ("Write", "topic", "site.mail.logs.raw") not in worker
    assert {r for r in sink if r[1] == "group"} == {("Read", "group", "pg-sink")}
    assert not {r for r in worker | sink if r[0] in ("Create", "Alter", "Delete")}
    assert ("Write", "topic", "pg-server-state-changelog") in worker
    assert not {r for r in sink if r[2].endswith("-changelog")}


def test_lines_are_commands_kafka_acls_takes(capsys, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka1:9093,kafka2:9093")
    monkeypatch.delenv("PATCHGATE_TOPIC_PREFIX", raising=False)
    assert main(["kafka-acls", "--command-config", "/etc/kafka/admin.properties",
                 "--principal", "mta=User:mx policy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(grants(SETTINGS))
    words = shlex.split(next(line for line in lines if "mx policy" in line))
    assert words[:7] == ["kafka-acls.sh", "--bootstrap-server", "kafka1:9093,kafka2:9093", "--command-config",
                         "/etc/kafka/admin.properties", "--add", "--allow-principal"]
    assert words[7:] == ["User:mx policy", "--operation", "Read", "--topic", "mail.decisions"]


def test_json_is_one_binding_a_line(capsys, monkeypatch):
    monkeypatch.delenv("PATCHGATE_TOPIC_PREFIX", raising=False)
    assert main(["kafka-acls", "--json"]) == 0
    bindings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"role": "shipper", "principal": "User:patchgate-shipper", "host": "*", "permission": "ALLOW",
            "operation": "Write", "resource_type": "topic", "resource_name": "mail.logs.raw",
            "pattern_type": "LITERAL"} in bindings
    assert len(bindings) == len({tuple(sorted(b.items())) for b in bindings})


def test_a_principal_that_does_not_read_is_refused(capsys):
    assert parse_principals(["sink=User:reports"]) == {"sink": "User:reports"}
    assert main(["kafka-acls", "--principal", "mtA=User:x"]) == 2
    assert "--principal 'mtA=User:x': give ROLE=TYPE:NAME" in capsys.readouterr().err
