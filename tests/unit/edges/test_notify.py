"""The notifier with a stand-in relay: what it sends, what it remembers, what it tries again."""
import logging
import smtplib
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from kafka import TopicPartition

from pipeline.domain.notices import Ledger
from pipeline.domain.notify_config import NotifyConfig
from pipeline.domain.policy import Decision
from pipeline.cli import main
from pipeline.edges import notify
from pipeline.edges.notify import Notifier

NOW = datetime(2026, 1, 20, tzinfo=UTC)
CONFIG = NotifyConfig(sender="patchgate@ops.example", report_url="http://report.example:6066",
                      contacts={"contoso": ("admins@contoso.example",), "tailspin": ("it@tailspin.example",)})


def decision(server, org, stage=1):
    return Decision(
        server_id=f"{org}/{server}" if org else server, org=org, hostname=server, product="Exchange2013",
        build="15.0.1497.2", status="unsupported", stage=stage, throttle_minutes_per_hour=0, block_minutes_per_hour=0,
        first_detected=datetime(2026, 1, 2, tzinfo=UTC), throttle_enabled_date=date(2026, 2, 1),
        blocking_enabled_date=date(2026, 3, 3), next_stage_start_date=date(2026, 2, 1), next_stage_throttle_rate=5,
        next_stage_block_rate=0, recommended_builds=(), reason="Exchange2013 is out of support", smtp_reply=None,
        decided_at=datetime(2026, 1, 10, tzinfo=UTC), version=1,
    )


class Relay:
    """Stands in for smtplib.SMTP: keeps what it accepted, refuses mail to `refusing`."""

    def __init__(self, journal: list, refusing=()):
        self.journal, self.refusing = journal, set(refusing)

    def send_message(self, mail):
        if mail["To"] in self.refusing:
            raise smtplib.SMTPRecipientsRefused({mail["To"]: (550, b"no such user")})
        self.journal.append(("sent", mail))
        return {}

    def quit(self):
        pass


def notifier(journal, refusing=(), reachable=True):
    def connect():
        if not reachable:
            raise ConnectionRefusedError("connection refused")
        return Relay(journal, refusing)

    return Notifier(CONFIG, Ledger(), lambda notice: journal.append(("recorded", notice.subject)), connect)


SERVERS = [decision("ex1.contoso.example", "contoso"), decision("ex2.tailspin.example", "tailspin")]


def test_each_due_notice_is_sent_then_recorded_and_not_sent_again():
    journal: list = []
    sender = notifier(journal)
    assert sender.send_due(SERVERS, NOW) == (2, 0)
    assert [entry[0] for entry in journal] == ["sent", "recorded", "sent", "recorded"], "recorded once accepted"
    mail = journal[0][1]
    assert (mail["From"], mail["To"]) == ("patchgate@ops.example", "admins@contoso.example")
    assert mail["Subject"] == "[patchgate] ex1.contoso.example: Exchange2013 15.0.1497.2 is unsupported, report only"
    assert "http://report.example:6066/servers/contoso/ex1.contoso.example" in mail.get_content()
    assert sender.send_due(SERVERS, NOW) == (0, 0)
    assert len(journal) == 4


def test_a_refused_notice_is_not_recorded_and_is_due_again():
    journal: list = []
    sender = notifier(journal, refusing={"admins@contoso.example"})
    assert sender.send_due(SERVERS, NOW) == (1, 1)
    assert [(kind, subject) for kind, subject in journal if kind == "recorded"] == [
        ("recorded", "[patchgate] ex2.tailspin.example: Exchange2013 15.0.1497.2 is unsupported, report only")]
    sender.connect = lambda: Relay(journal)
    assert sender.send_due(SERVERS, NOW) == (1, 0)
    assert journal[-1] == ("recorded", "[patchgate] ex1.contoso.example: Exchange2013 15.0.1497.2 is unsupported, "
                                       "report only")


def test_an_unreachable_relay_leaves_every_notice_due():
    journal: list = []
    sender = notifier(journal, reachable=False)
    assert sender.send_due(SERVERS, NOW) == (0, 2)
    assert journal == []
    assert sender.ledger.events == set()


def test_a_notice_whose_record_fails_is_not_taken_as_sent():
    sender = notifier([])

    def broker_down(notice):
        raise TimeoutError("broker away")

    sender.record = broker_down
    with pytest.raises(TimeoutError):
        sender.send_due(SERVERS[:1], NOW)
    assert sender.ledger.events == set(), "sent again after a restart: at least once"


def test_orgs_without_contacts_are_logged_once(caplog):
    sender = notifier([])
    quiet = [decision("mx.fabrikam.example", "fabrikam"), decision("10.1.2.3", None)]
    with caplog.at_level(logging.WARNING, logger="pipeline.edges.notify"):
        assert sender.send_due(quiet, NOW) == (0, 0)
        assert sender.send_due(quiet + [replace(quiet[0], stage=2, version=2)], NOW) == (0, 0)
    assert sorted(r.getMessage() for r in caplog.records) == [
        "notices for org fabrikam skipped: no address in [notify.contacts]",
        "notices for servers without an org skipped: no address in [notify.contacts]",
    ]


class _Consumer:
    """A KafkaConsumer stand-in whose topic exists from the `appears_at`th look on (None: never)."""

    def __init__(self, appears_at=None):
        self.appears_at, self.looks, self.assigned, self.from_start = appears_at, 0, None, None

    def partitions_for_topic(self, topic):
        self.looks += 1
        return {0, 1} if self.appears_at is not None and self.looks >= self.appears_at else None

    def assign(self, partitions):
        self.assigned = partitions

    def seek_to_beginning(self, *partitions):
        self.from_start = list(partitions)


def test_decisions_are_read_from_the_start_once_their_topic_exists(monkeypatch):
    monkeypatch.setattr(notify.time, "sleep", lambda seconds: None)
    consumer = _Consumer(appears_at=3)
    partitions = notify._assign_from_start(consumer, "pg.mail.decisions", None, lambda: False)
    assert partitions == consumer.assigned == consumer.from_start == [
        TopicPartition("pg.mail.decisions", 0), TopicPartition("pg.mail.decisions", 1)]


def test_a_single_pass_without_the_decisions_topic_stops_with_what_to_do(monkeypatch):
    monkeypatch.setattr(notify.time, "sleep", lambda seconds: None)
    with pytest.raises(notify.DecisionsMissing, match=r"pg.mail.decisions does not exist after 0 s: no worker .*"
                                                      r"`patchgate topics` creates them"):
        notify._assign_from_start(_Consumer(), "pg.mail.decisions", 0.0, lambda: False)


def test_a_follower_waits_for_the_decisions_topic_until_it_is_stopped(monkeypatch, caplog):
    monkeypatch.setattr(notify.time, "sleep", lambda seconds: None)
    consumer = _Consumer()
    with caplog.at_level(logging.INFO, logger="pipeline.edges.notify"):
        assert notify._assign_from_start(consumer, "pg.mail.decisions", None, lambda: consumer.looks >= 5) is None
    assert caplog.text.count("waiting for pg.mail.decisions") == 1


def test_notify_without_the_decisions_topic_exits_1_with_one_line(monkeypatch, capsys, kafka_answers):
    def missing(*args, **kwargs):
        raise notify.DecisionsMissing("pg.mail.decisions does not exist after 30 s")
    monkeypatch.setattr(notify, "run", missing)
    assert main(["notify"]) == 1
    assert capsys.readouterr().err == "patchgate notify: pg.mail.decisions does not exist after 30 s\n"


class _Ledger:
    """Stands in for LedgerWriter: the notices recorded on mail.notices."""

    def __init__(self):
        self.notices: list = []

    def __call__(self, notice):
        self.notices.append(notice)

    def close(self):
        pass


def test_a_tombstone_on_mail_decisions_forgets_its_server_in_the_pass_and_while_following(
        decisions_topic, monkeypatch):
    ledger = _Ledger()
    contoso, tailspin = SERVERS
    topic = decisions_topic(partitions=2, batch=1)
    topic.write(contoso, partition=0)
    topic.write(tailspin, partition=1)
    topic.delete(tailspin.server_id, partition=1)
    journal: list = []
    monkeypatch.setattr(notify, "_consumer", lambda settings: topic)
    monkeypatch.setattr(notify, "ensure_ledger_topic", lambda settings: "mail.notices")
    monkeypatch.setattr(notify, "read_ledger", lambda settings, name: Ledger())
    monkeypatch.setattr(notify, "LedgerWriter", lambda settings, name: ledger)
    monkeypatch.setattr(notify.smtplib, "SMTP", lambda *args, **kwargs: Relay(journal))
    live = [lambda: topic.write(replace(tailspin, stage=2, version=2), partition=1),  # decided again
            lambda: topic.delete(contoso.server_id, partition=0)]

    def on_poll(topic):
        if ledger.notices and topic.read_to_end() and live:
            live.pop(0)()
    topic.on_poll = on_poll

    def stop():
        return not live and topic.read_to_end()

    sent = notify.run(notify.Settings(notify=CONFIG), at=NOW, follow=True, stop=stop)
    # tailspin's first decision was deleted before the pass: only the one it got again is notified.
    assert sent == 2
    assert [mail["X-Patchgate-Server"] for _, mail in journal] == [contoso.server_id, tailspin.server_id]
    assert [(n.decision.server_id, n.decision.version) for n in ledger.notices] == [
        (contoso.server_id, 1), (tailspin.server_id, 2)]
