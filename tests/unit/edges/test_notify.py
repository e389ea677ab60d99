"""The notifier with a stand-in relay (what it sends, what it remembers, what it tries again),
and with a real SMTP server (aiosmtpd) that asks for STARTTLS or implicit TLS and a login."""
import asyncio
import logging
import smtplib
import ssl
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from kafka import TopicPartition

from pipeline.cli import main
from pipeline.domain.config import ConfigError
from pipeline.domain.notices import Ledger
from pipeline.domain.notify_config import NotifyConfig
from pipeline.edges import notify
from pipeline.edges.notify import Notifier, SmtpRelay
from tests.conftest import decision

NOW = datetime(2026, 1, 20, tzinfo=UTC)
CONFIG = NotifyConfig(sender="patchgate@ops.example", report_url="http://report.example:6066",
                      contacts={"contoso": ("admins@contoso.example",), "tailspin": ("it@tailspin.example",)})


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


# A real relay: aiosmtpd in a thread, with a certificate from a CA made for the test.

USER, PASSWORD = "patchgate@contoso.example", "correct horse battery staple"


@pytest.fixture(scope="module")
def relay_tls(tmp_path_factory) -> SimpleNamespace:
    """A CA, and a certificate it signed for the relay at 127.0.0.1 (and localhost)."""
    folder = tmp_path_factory.mktemp("relay-tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=patchgate test relay CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "relay.key", "-out", "relay.csr", "-subj", "/CN=localhost")
    (folder / "relay.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                                      "extendedKeyUsage = serverAuth\n")
    openssl("x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "relay.pem", "-days", "2", "-extfile", "relay.ext")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "relay.pem", folder / "relay.key")
    return SimpleNamespace(ca=folder / "ca.pem", server=server, folder=folder)


class Mailroom:
    """aiosmtpd's handler and authenticator: keeps each mail accepted (whether it came over TLS and
    after which login) and each login tried."""

    def __init__(self):
        self.mails: list[SimpleNamespace] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(SimpleNamespace(
            tls=server.transport.get_extra_info("cipher") is not None, login=session.login_data,
            to=envelope.rcpt_tos, subject=message_from_bytes(envelope.content, policy=default)["Subject"]))
        return "250 2.0.0 queued"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # Not handled: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False, auth_data=auth_data)


class _AnyPort(Controller):
    """Listens on a port the system picks (aiosmtpd's Controller wants one named)."""

    def _trigger_server(self):
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def relay():
    """relay(**aiosmtpd's SMTP parameters, ssl_context=...) -> a running server on `host`: its
    `.port` and its Mailroom `.room`."""
    started = []

    def start(host="127.0.0.1", **parameters):
        room = Mailroom()
        controller = _AnyPort(room, hostname=host, port=0, authenticator=room, **parameters)
        controller.start()
        started.append(controller)
        return SimpleNamespace(port=controller.port, room=room)

    yield start
    for controller in started:
        controller.stop()


def relay_notifier(table, environ=None):
    """A Notifier whose relay is the [notify] table's, as `patchgate notify` builds it."""
    config = replace(NotifyConfig.from_mapping({"smtp_host": "127.0.0.1", **table}), sender=CONFIG.sender,
                     report_url=CONFIG.report_url, contacts=CONFIG.contacts)
    return Notifier(config, Ledger(), lambda notice: None, SmtpRelay.from_config(config, environ or {}).connect)


SUBJECTS = ["[patchgate] ex1.contoso.example: Exchange2013 15.0.1497.2 is unsupported, report only",
            "[patchgate] ex2.tailspin.example: Exchange2013 15.0.1497.2 is unsupported, report only"]


def test_notices_go_out_after_starttls_and_a_login_the_relay_demands(relay, relay_tls):
    server = relay(tls_context=relay_tls.server, require_starttls=True, auth_required=True, auth_require_tls=True)
    sender = relay_notifier({"smtp_port": server.port, "smtp_tls": "starttls", "smtp_username": USER,
                             "smtp_ca_file": str(relay_tls.ca)}, {"PATCHGATE_SMTP_PASSWORD": PASSWORD})
    assert sender.send_due(SERVERS, NOW) == (2, 0)
    assert [(m.tls, m.login, m.to, m.subject) for m in server.room.mails] == [
        (True, USER.encode(), ["admins@contoso.example"], SUBJECTS[0]),
        (True, USER.encode(), ["it@tailspin.example"], SUBJECTS[1])]
    assert len(sender.ledger.told) == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_notices_go_out_over_implicit_tls_with_the_password_from_a_file(relay, relay_tls, tmp_path):
    # aiosmtpd does not know that an implicit TLS connection is secured: it is told to offer AUTH all the same.
    server = relay(ssl_context=relay_tls.server, auth_required=True, auth_require_tls=False)
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    sender = relay_notifier({"smtp_port": server.port, "smtp_tls": "tls", "smtp_username": USER,
                             "smtp_password_file": str(secret), "smtp_ca_file": str(relay_tls.ca)})
    assert sender.send_due(SERVERS, NOW) == (2, 0)
    assert [(m.tls, m.login, m.subject) for m in server.room.mails] == [
        (True, USER.encode(), SUBJECTS[0]), (True, USER.encode(), SUBJECTS[1])]
    assert server.room.logins == [(USER, PASSWORD)], "one session, one login, the file's line end dropped"


def test_a_wrong_password_sends_nothing_and_every_notice_stays_due(relay, relay_tls, caplog):
    server = relay(tls_context=relay_tls.server, require_starttls=True, auth_required=True)
    sender = relay_notifier({"smtp_port": server.port, "smtp_username": USER, "smtp_tls": "starttls",
                             "smtp_ca_file": str(relay_tls.ca)}, {"PATCHGATE_SMTP_PASSWORD": "Tr0ub4dor&3"})
    with caplog.at_level(logging.ERROR, logger="pipeline.edges.notify"):
        assert sender.send_due(SERVERS, NOW) == (0, 2)
    assert server.room.mails == [] and sender.ledger.events == set()
    assert set(server.room.logins) == {(USER, "Tr0ub4dor&3")}, "smtplib tries each mechanism offered"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot send through the SMTP relay 127.0.0.1:{server.port}: it refused the login of {USER!r} "
        "(535 5.7.8 Authentication credentials invalid): check notify.smtp_username and the password of "
        "PATCHGATE_SMTP_PASSWORD; 2 notices wait for the next run"]


def test_a_relay_that_offers_no_starttls_gets_neither_the_password_nor_a_mail(relay, caplog):
    # A relay that would take a login and mail in clear text.
    server = relay(auth_require_tls=False)
    sender = relay_notifier({"smtp_port": server.port, "smtp_tls": "starttls", "smtp_username": USER},
                            {"PATCHGATE_SMTP_PASSWORD": PASSWORD})
    with caplog.at_level(logging.ERROR, logger="pipeline.edges.notify"):
        assert sender.send_due(SERVERS, NOW) == (0, 2)
    assert (server.room.logins, server.room.mails, sender.ledger.events) == ([], [], set())
    assert 'it offers no STARTTLS, which notify.smtp_tls = "starttls" requires (nothing was sent in clear text)' \
        in caplog.text


def test_a_relay_certificate_from_a_ca_the_system_does_not_know_is_refused(relay, relay_tls, caplog):
    server = relay(tls_context=relay_tls.server, require_starttls=True, auth_required=True)
    sender = relay_notifier({"smtp_port": server.port, "smtp_tls": "starttls", "smtp_username": USER},
                            {"PATCHGATE_SMTP_PASSWORD": PASSWORD})
    with caplog.at_level(logging.ERROR, logger="pipeline.edges.notify"):
        assert sender.send_due(SERVERS, NOW) == (0, 2)
    assert (server.room.logins, server.room.mails) == ([], [])
    assert "its certificate does not verify (unable to get local issuer certificate): a relay whose CA is not " \
           "among the system's needs notify.smtp_ca_file" in caplog.text


def test_a_relay_certificate_for_another_name_is_refused(relay, relay_tls, caplog):
    # Loopback too, but not the address the certificate names.
    server = relay(host="127.0.0.2", ssl_context=relay_tls.server)
    sender = relay_notifier({"smtp_host": "127.0.0.2", "smtp_port": server.port, "smtp_tls": "tls",
                             "smtp_ca_file": str(relay_tls.ca)})
    with caplog.at_level(logging.ERROR, logger="pipeline.edges.notify"):
        assert sender.send_due(SERVERS, NOW) == (0, 2)
    assert server.room.mails == []
    assert "IP address mismatch" in caplog.text


def _notify_file(tmp_path: Path, lines: str) -> str:
    config = tmp_path / "patchgate.toml"
    config.write_text("[notify]\n" + lines + '[notify.contacts]\ncontoso = ["admins@contoso.example"]\n')
    return str(config)


def test_notify_exits_1_and_records_nothing_when_the_relay_offers_no_starttls(
        relay, decisions_topic, monkeypatch, capsys, kafka_answers, tmp_path):
    server = relay(auth_require_tls=False)
    topic = decisions_topic()
    topic.write(SERVERS[0])
    ledger = _Ledger()
    monkeypatch.setattr(notify, "_consumer", lambda settings: topic)
    monkeypatch.setattr(notify, "ensure_ledger_topic", lambda settings: "mail.notices")
    monkeypatch.setattr(notify, "read_ledger", lambda settings, name: Ledger())
    monkeypatch.setattr(notify, "LedgerWriter", lambda settings, name: ledger)
    monkeypatch.delenv("PATCHGATE_SMTP_PASSWORD", raising=False)
    config = _notify_file(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {server.port}\nsmtp_tls = "starttls"\n')
    assert main(["--config", config, "notify", "--at", "2026-01-20T00:00:00+00:00"]) == 1
    assert capsys.readouterr().err.endswith(
        "patchgate notify: 1 notices could not be sent (0 were): the next run tries them again\n")
    assert (ledger.notices, server.room.mails) == ([], [])


def test_notify_without_the_relay_password_stops_at_start_naming_the_settings(
        monkeypatch, capsys, kafka_answers, tmp_path):
    def no_kafka(settings):
        raise AssertionError("Kafka was read before the settings were checked")
    monkeypatch.setattr(notify, "_consumer", no_kafka)
    monkeypatch.delenv("PATCHGATE_SMTP_PASSWORD", raising=False)
    config = _notify_file(tmp_path, f'smtp_host = "smtp.office365.com"\nsmtp_port = 587\nsmtp_username = "{USER}"\n')
    assert main(["--config", config, "notify"]) == 2
    assert capsys.readouterr().err == ("patchgate notify: config: notify.smtp_username needs a password: neither "
                                       "PATCHGATE_SMTP_PASSWORD nor notify.smtp_password_file is set\n")


def _start_error(table, environ=None) -> str:
    with pytest.raises(ConfigError) as raised:
        SmtpRelay.from_config(NotifyConfig.from_mapping({"smtp_host": "relay.example", **table}), environ or {})
    return str(raised.value)


def test_the_password_comes_from_one_place_and_belongs_to_a_login(tmp_path):
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD)
    assert _start_error({"smtp_username": USER, "smtp_password_file": str(secret)},
                        {"PATCHGATE_SMTP_PASSWORD": PASSWORD}) == \
        "notify.smtp_password_file and PATCHGATE_SMTP_PASSWORD are both set: give one"
    assert _start_error({}, {"PATCHGATE_SMTP_PASSWORD": PASSWORD}) == \
        "PATCHGATE_SMTP_PASSWORD is set, but notify.smtp_username, the login it belongs to, is not"
    relay = SmtpRelay.from_config(NotifyConfig.from_mapping({"smtp_host": "relay.example", "smtp_username": USER}),
                                  {"PATCHGATE_SMTP_PASSWORD": PASSWORD})
    assert (relay.tls, relay.password, relay.password_source) == ("starttls", PASSWORD, "PATCHGATE_SMTP_PASSWORD")
    assert PASSWORD not in repr(relay)
    assert _start_error({"smtp_username": USER}, {"PATCHGATE_SMTP_PASSWORD": "pässwort"}) == \
        "PATCHGATE_SMTP_PASSWORD holds characters other than ASCII, which Python's SMTP client cannot send"


def test_unreadable_password_and_ca_files_are_named_at_start(tmp_path):
    empty, not_pem = tmp_path / "empty", tmp_path / "not.pem"
    empty.write_text("\n")
    not_pem.write_text("not a certificate\n")
    missing = tmp_path / "missing"
    assert _start_error({"smtp_username": USER, "smtp_password_file": str(empty)}) == \
        f"notify.smtp_password_file is empty: {empty}"
    assert _start_error({"smtp_username": USER, "smtp_password_file": str(missing)}) == \
        f"notify.smtp_password_file cannot be read: {missing}: No such file or directory"
    assert _start_error({"smtp_ca_file": str(missing)}) == \
        f"notify.smtp_ca_file cannot be read: {missing}: No such file or directory"
    assert _start_error({"smtp_ca_file": str(not_pem)}).startswith(f"notify.smtp_ca_file holds no PEM CA certificate: "
                                                                    f"{not_pem}")
