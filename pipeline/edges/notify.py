"""`patchgate notify`: mail each org's contacts about its servers, through an SMTP relay.

Reads mail.decisions from the start (the newest decision per server counts; a server whose key a
tombstone deleted is forgotten, and nothing more is sent for it), sends the notices
pipeline.domain.notices finds due, and keeps what it sent in the compacted mail.notices topic,
keyed "<server_id>|<event>", read back at start: a restart sends nothing twice. A notice's record
is written after the relay accepted the mail, so delivery is at least once: a crash between the
two sends that notice again on the next run. (Delete a key with a tombstone to send it again.)

The stage notices follow the decisions, which move with event time. The lead-days warnings are
timed by the wall clock (or `--at`): a warning is due because time passed, and no decision may
arrive to say so (a server that went quiet keeps its last one, and its throttling date with it).

The relay is reached as `[notify]` says: in clear text, after STARTTLS, or over implicit TLS, the
certificate checked against the system's CAs (or smtp_ca_file) and the host name; then logged in
when smtp_username is set. The password (smtp_password_file or PATCHGATE_SMTP_PASSWORD) and the CA
file are read at start, before any decision is; a relay that cannot give what the settings ask for
(no STARTTLS, a certificate that does not verify, a refused login) sends nothing, and every notice
stays due.
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import UnknownTopicOrPartitionError

from pipeline import kafka_clients, topic_reading
from pipeline.contracts import records, topics
from pipeline.domain.config import ConfigError
from pipeline.domain.notices import Ledger, Notice, SentNotice, due_notices
from pipeline.domain.notify_config import PASSWORD_VARIABLE, NotifyConfig
from pipeline.domain.policy import Decision
from pipeline.domain.report import iso_utc
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS
from pipeline.kafka_admin import ensure_topics, read_compacted
from pipeline.kafka_connection import password_from_file, readable_file
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# How often `--follow` looks for warnings that came due with time alone.
RECHECK_EVERY_S = 60.0
# How long a single pass waits for mail.decisions to exist, and reading it to its end may stall.
DECISIONS_PATIENCE_S = 30.0
READ_TIMEOUT_S = 60.0
SMTP_TIMEOUT_S = 30.0


class NoticesFailed(RuntimeError):
    """Some notices could not be sent (they are due again on the next run)."""

    def __init__(self, sent: int, failed: int):
        super().__init__(f"{failed} notices could not be sent ({sent} were): the next run tries them again")
        self.sent, self.failed = sent, failed


class DecisionsMissing(RuntimeError):
    """mail.decisions does not exist: no worker has created the pipeline's topics yet."""


class RelayError(smtplib.SMTPException):
    """The relay cannot give what `[notify]` asks for (TLS, a login): no mail was sent through it."""


@dataclass(frozen=True)
class SmtpRelay:
    """The relay as `[notify]` names it, with the password and the TLS context its files give."""

    host: str
    port: int
    tls: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Where the password came from, for a refused login's message.
    password_source: str | None = None
    context: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: NotifyConfig, environ: Mapping[str, str] = os.environ) -> SmtpRelay:
        """Reads the password (file or environment) and the CA file; raises ConfigError naming the
        setting when one is missing, doubled or unreadable."""
        password, source = _password(config, environ)
        return cls(config.smtp_host, config.smtp_port, config.smtp_tls, config.smtp_username, password, source,
                   None if config.smtp_tls == "none" else _tls_context(config.smtp_ca_file))

    def connect(self) -> smtplib.SMTP:
        """A session with the relay, secured and logged in as the settings ask; RelayError when the
        relay cannot, before any password or mail went out."""
        try:
            if self.tls == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT_S,
                                                      context=self.context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S)
        except ssl.SSLCertVerificationError as exc:
            raise _unverified(exc) from exc
        try:
            if self.tls == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise RelayError('it offers no STARTTLS, which notify.smtp_tls = "starttls" requires '
                                     "(nothing was sent in clear text)")
                smtp.starttls(context=self.context)
            if self.username is not None:
                self._log_in(smtp)
        except ssl.SSLCertVerificationError as exc:
            smtp.close()
            raise _unverified(exc) from exc
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _log_in(self, smtp: smtplib.SMTP) -> None:
        assert self.username is not None and self.password is not None
        smtp.ehlo()
        if not smtp.has_extn("auth"):
            raise RelayError(f"it offers no AUTH, and notify.smtp_username is set ({self.username!r})")
        try:
            smtp.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise RelayError(f"it refused the login of {self.username!r} ({exc.smtp_code} {reply}): check "
                             f"notify.smtp_username and the password of {self.password_source}") from exc

    def describe(self) -> str:
        """How the relay is reached, for the log."""
        secured = {"none": "in clear text", "starttls": "with STARTTLS", "tls": "over TLS"}[self.tls]
        return f"{self.host}:{self.port} {secured}" + (f" as {self.username!r}" if self.username else "")


def _password(config: NotifyConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The password and where it came from; None without a login."""
    from_environment = environ.get(PASSWORD_VARIABLE) or None
    if from_environment is not None and config.smtp_password_file is not None:
        raise ConfigError("notify.smtp_password_file", f"and {PASSWORD_VARIABLE} are both set: give one")
    if config.smtp_username is None:
        if from_environment is not None:
            raise ConfigError(PASSWORD_VARIABLE, "is set, but notify.smtp_username, the login it belongs to, is not")
        return None, None
    if config.smtp_password_file is not None:
        path = str(config.smtp_password_file)
        password, key = password_from_file(path, "notify.smtp_password_file"), "notify.smtp_password_file"
        source = f"{key} ({path})"
    elif from_environment is None:
        raise ConfigError("notify.smtp_username", f"needs a password: neither {PASSWORD_VARIABLE} nor "
                                                  "notify.smtp_password_file is set")
    else:
        password, key = from_environment, PASSWORD_VARIABLE
        source = key
    # smtplib encodes the login as ASCII: anything else would fail at the first session, not here.
    for text, named in ((config.smtp_username, "notify.smtp_username"), (password, key)):
        if not text.isascii():
            raise ConfigError(named, "holds characters other than ASCII, which Python's SMTP client cannot send")
    return password, source


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificates and host names verified: against the CA file alone when there is one, as a
    relay with a private CA needs, else against the system's CAs."""
    if ca_file is None:
        return ssl.create_default_context()
    path = readable_file(str(ca_file), "notify.smtp_ca_file")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ConfigError("notify.smtp_ca_file", f"holds no PEM CA certificate: {path} ({exc.reason})") from None


def _unverified(exc: ssl.SSLCertVerificationError) -> RelayError:
    return RelayError(f"its certificate does not verify ({exc.verify_message}): a relay whose CA is not among the "
                      "system's needs notify.smtp_ca_file")


class Notifier:
    """Sends the due notices and remembers them: what `run` does once it has the decisions."""

    def __init__(self, config: NotifyConfig, ledger: Ledger, record: Callable[[Notice], None],
                 connect: Callable[[], smtplib.SMTP]):
        self.config, self.ledger, self.record, self.connect = config, ledger, record, connect
        self.uncontacted_logged: set[str | None] = set()

    def send_due(self, decisions: Iterable[Decision], now: datetime) -> tuple[int, int]:
        """(sent, failed) of the notices due at `now`; a failed one stays due."""
        due = due_notices(decisions, self.ledger, now, self.config)
        for org in due.uncontacted - self.uncontacted_logged:
            log.warning("notices for %s skipped: no address in [notify.contacts]",
                        f"org {org}" if org else "servers without an org")
        self.uncontacted_logged |= due.uncontacted
        sent = failed = 0
        smtp: smtplib.SMTP | None = None
        try:
            for position, notice in enumerate(due.notices):
                if smtp is None:
                    try:
                        smtp = self.connect()
                    except (smtplib.SMTPException, OSError) as exc:
                        log.error("cannot send through the SMTP relay %s:%d: %s; %d notices wait for the next run",
                                  self.config.smtp_host, self.config.smtp_port, exc, len(due.notices) - position)
                        return sent, failed + len(due.notices) - position
                try:
                    refused = smtp.send_message(message(notice, self.config.sender))
                except (smtplib.SMTPException, OSError) as exc:
                    log.error("notice %r to %s not sent: %s", notice.subject, ", ".join(notice.recipients), exc)
                    failed += 1
                    _close(smtp)
                    smtp = None
                    continue
                if refused:
                    log.warning("notice %r: the relay refused %s", notice.subject, ", ".join(sorted(refused)))
                self.record(notice)
                for event in notice.sent():
                    self.ledger.add(event)
                sent += 1
                log.info("sent %r to %s", notice.subject, ", ".join(notice.recipients))
        finally:
            if smtp is not None:
                _close(smtp)
        return sent, failed


def message(notice: Notice, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(notice.recipients)
    mail["Subject"] = notice.subject
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    mail["X-Patchgate-Server"] = notice.decision.server_id
    mail.set_content(notice.body)
    return mail


class LedgerWriter:
    """Writes a sent notice's events to mail.notices and waits for the broker to have them."""

    def __init__(self, settings: Settings, topic: str):
        self.topic = topic
        self.producer = kafka_clients.producer(settings, acks="all", reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)

    def __call__(self, notice: Notice) -> None:
        sent_at = iso_utc(datetime.now(UTC))
        futures = [
            self.producer.send(self.topic, key=event.key.encode(), value=json.dumps(
                {**event.to_json(), "sent_at": sent_at, "recipients": list(notice.recipients),
                 "subject": notice.subject}).encode())
            for event in notice.sent()
        ]
        for future in futures:
            future.get(timeout=30)

    def close(self) -> None:
        self.producer.close()


def run(settings: Settings, at: datetime | None = None, follow: bool = False,
        stop: Callable[[], bool] = lambda: False, environ: Mapping[str, str] = os.environ) -> int:
    """Send the notices due, as of `at` (default: the wall clock); the number sent.

    One pass over mail.decisions up to its end, or with `follow` also every decision after it, and
    a look for due warnings every minute, until `stop()`. Raises NoticesFailed when a single pass
    could not send some notice, and DecisionsMissing when mail.decisions does not come within DECISIONS_PATIENCE_S;
    following, it waits for the topic as long as it takes (a notifier started before any worker).
    Raises ConfigError, before reading anything, when the relay's password or CA file cannot be had
    (the password from `environ`'s PATCHGATE_SMTP_PASSWORD, or its file)."""
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    relay = SmtpRelay.from_config(settings.notify, environ)
    log.info("notices go through the SMTP relay %s", relay.describe())

    def now() -> datetime:
        return at or datetime.now(UTC)

    newest = records.latest_decisions()
    consumer = _consumer(settings)
    writer: LedgerWriter | None = None
    try:
        # The decisions first: a mistyped topic prefix creates no ledger topic.
        patience = None if follow else DECISIONS_PATIENCE_S
        partitions = _assign_from_start(consumer, settings.topic(topics.DECISIONS), patience, stop)
        if partitions is None:
            return 0
        ledger_topic = ensure_ledger_topic(settings)
        writer = LedgerWriter(settings, ledger_topic)
        notifier = Notifier(settings.notify, read_ledger(settings, ledger_topic), writer, relay.connect)
        for message in topic_reading.records_to_end(consumer, partitions, READ_TIMEOUT_S):
            topic_reading.folded(newest.add, message)
        sent, failed = notifier.send_due(newest.by_key.values(), now())
        if not follow:
            if failed:
                raise NoticesFailed(sent, failed)
            return sent
        checked = time.monotonic()
        while not stop():
            changed: set[bytes] = set()
            for messages in consumer.poll(timeout_ms=1000).values():
                changed.update(message.key for message in messages if topic_reading.folded(newest.add, message))
            # Every minute all servers (warnings due with time, notices that failed), else the changed ones.
            if time.monotonic() - checked >= RECHECK_EVERY_S:
                sent += notifier.send_due(newest.by_key.values(), now())[0]
                checked = time.monotonic()
            elif changed:
                sent += notifier.send_due([newest.by_key[key] for key in changed if key in newest.by_key], now())[0]
        return sent
    finally:
        consumer.close()
        if writer is not None:
            writer.close()


def ensure_ledger_topic(settings: Settings) -> str:
    """Create mail.notices (compacted, as many partitions as the pipeline's topics) if missing."""
    ledger = topics.notices_topic(settings)
    ensure_topics(settings, [ledger])
    return ledger.name


def read_ledger(settings: Settings, topic: str) -> Ledger:
    """The notices sent so far, from mail.notices up to its end."""
    ledger = Ledger()
    for values in read_compacted(settings, topic).values():
        for key, value in values.items():
            try:
                ledger.add(SentNotice.from_json(json.loads(value)))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("skipped the unreadable notice record %r in %s: %s", key, topic, exc)
    log.info("%d notices sent before, for %d servers", len(ledger.events), len(ledger.told))
    return ledger


def _consumer(settings: Settings) -> KafkaConsumer:
    return kafka_clients.consumer(settings, reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)


def _assign_from_start(consumer: KafkaConsumer, topic: str, patience_s: float | None,
                       stop: Callable[[], bool]) -> list[TopicPartition] | None:
    """The topic's partitions, assigned from their start, once the topic exists: within
    `patience_s` (None: as long as it takes), else DecisionsMissing; None if `stop()` came first."""
    deadline = None if patience_s is None else time.monotonic() + patience_s
    waiting_said = False
    while True:
        try:
            return topic_reading.from_start(consumer, topic)
        except UnknownTopicOrPartitionError:
            pass  # a topic created a moment ago may not be in the broker's metadata yet
        if deadline is not None and time.monotonic() > deadline:
            raise DecisionsMissing(f"{topic} does not exist after {patience_s:g} s: no worker has created the "
                                   "pipeline's topics yet (`patchgate topics` creates them)")
        if stop():
            return None
        if not waiting_said and deadline is None:
            log.info("waiting for %s: no worker has created it yet", topic)
            waiting_said = True
        time.sleep(0.5)


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
