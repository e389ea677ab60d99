"""Fixtures for tests on the real Kafka broker that deploy/test.sh starts (deploy/kafka/kafka.sh)."""
from __future__ import annotations

import email
import email.message
import email.policy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import kafka_clients
from pipeline.catalog_files import load_catalog
from pipeline.contracts import records, topics, wire
from pipeline.contracts.avro import ENFORCEMENT_DECISION
from pipeline.domain.replay import replay
from pipeline.evaluate import read_observations
from pipeline.kafka_admin import wait_until_drained
from pipeline.settings import load_settings
from testkit.cluster import ClusterScript
from testkit.isolated import Worker, isolated_env, read_topic as _read_topic
from testkit.ports import free_port
from tests.schema_registry_double import SchemaRegistryDouble

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def wire_format_of_the_run():
    """`PATCHGATE_WIRE_FORMAT=confluent` (make test-confluent) runs the suite in the Confluent wire
    format: a registry double for the session unless PATCHGATE_SCHEMA_REGISTRY_URL names one, in
    the environment every command of the tests inherits, and this process writing as they do."""
    if os.environ.get("PATCHGATE_WIRE_FORMAT") != "confluent":
        yield
        return
    double = None if os.environ.get("PATCHGATE_SCHEMA_REGISTRY_URL") else SchemaRegistryDouble().start()
    if double is not None:
        os.environ["PATCHGATE_SCHEMA_REGISTRY_URL"] = double.url
    frame_as_the_run_does()
    yield
    if double is not None:
        double.stop()


def patchgate(env: dict, *args: str) -> subprocess.CompletedProcess:
    """A `patchgate` command as an operator runs it, its output captured."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def frame_as_the_run_does() -> None:
    """This process's framing back to the run's, after a test that changed it."""
    wire.configure(load_settings(None, environ=os.environ), writes=True)


@pytest.fixture
def pipeline_env(tmp_path):
    return isolated_env(tmp_path / "data")


class Workers:
    """Starts workers and makes sure none outlives the test."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs = env, logs
        self.started: list[Worker] = []

    def start(self) -> Worker:
        worker = Worker(self.env, self.logs / f"worker-{len(self.started)}.log")
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()


def _drained(settings, worker: Worker, timeout: float = 180) -> None:
    try:
        wait_until_drained(settings, timeout=timeout, worker_alive=worker.alive)
    except (TimeoutError, RuntimeError) as exc:
        raise AssertionError(f"{exc}; worker log:\n{worker.tail()}") from exc


@pytest.fixture
def start_worker(pipeline_env, tmp_path):
    _, env = pipeline_env
    workers = Workers(env, tmp_path)
    yield workers.start
    workers.close()


@pytest.fixture
def drained():
    """drained(settings, worker): wait until the worker has processed everything, or fail with its log."""
    return _drained


@pytest.fixture
def read_topic():
    """read_topic(settings, name, prefixed=True): every record of a pipeline topic."""
    return _read_topic


TESTS = ROOT / "tests"


class SecuredCluster(ClusterScript):
    """The secured three-broker cluster of deploy/kafka/cluster.sh (SASL_SSL with SCRAM-SHA-512, the
    StandardAuthorizer, nothing allowed without an ACL), started if it does not run yet."""

    def __init__(self):
        super().__init__()
        self.started = self.run("status", check=False).returncode != 0
        if self.started:
            self.run("start")

    def stop(self) -> None:
        if self.started:
            self.run("stop", timeout=120, check=False)


@pytest.fixture(scope="session")
def secured_cluster():
    cluster = SecuredCluster()
    yield cluster
    cluster.stop()


class MixedRun:
    """A worker that has processed every sample file (tests/samples, settings tests/samples.toml)."""

    def __init__(self, folder: Path):
        from pipeline.edges.shipper import ship

        self.settings, self.env = isolated_env(folder / "data", config=TESTS / "samples.toml")
        self.workers = Workers(self.env, folder)
        self.shipped = ship(self.settings, [str(TESTS / "samples")])
        self.worker = self.workers.start()
        _drained(self.settings, self.worker)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    run = MixedRun(tmp_path_factory.mktemp("mixed"))
    yield run
    run.workers.close()


class PostfixInstance:
    """A private Postfix (Debian's package) on a loopback port, configured by `settings` (main.cf lines)."""

    def __init__(self, folder: Path, smtp_port: int, settings: list[str]):
        self.folder, self.smtp_port = folder, smtp_port
        self.config = folder / "etc"
        for sub in ("etc", "spool", "data"):
            (folder / sub).mkdir(parents=True)
        shutil.chown(folder / "data", user="postfix")
        master = Path("/etc/postfix/master.cf").read_text()
        smtp_service = re.compile(r"^smtp\s+inet\s.*$", re.M)
        assert smtp_service.search(master), "no smtp service line in /etc/postfix/master.cf"
        master = smtp_service.sub(f"127.0.0.1:{smtp_port} inet n - n - - smtpd", master)
        # No service chroots: Debian fills the chroot (the default queue folder) with the files its
        # services need, and this queue folder has none of them.
        master = re.sub(r"^((?:\S+\s+){4})y(?=\s)", r"\1n", master, flags=re.M)
        (self.config / "master.cf").write_text(master)
        (self.config / "main.cf").write_text("\n".join([
            "compatibility_level = 3.6",
            f"queue_directory = {folder / 'spool'}",
            f"data_directory = {folder / 'data'}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = mx-test.example.net",
            f"maillog_file_prefixes = {folder}",
            f"maillog_file = {folder / 'postfix.log'}",
            *settings,
            "",
        ]))
        subprocess.run(["postfix", "-c", str(self.config), "start"], check=True, capture_output=True)

    def swaks(self, helo: str, headers: tuple[str, ...] | None = None, client: str | None = None) -> str:
        """The server's answer to RCPT TO for a client that says HELO `helo`; with `headers`, to the
        end of a message that carries them besides swaks's own. With `client` ("name[address]"),
        the connection speaks for that client (XCLIENT, where the server allows it)."""
        message = ["--quit-after", "RCPT"] if headers is None else [
            arg for header in headers for arg in ("--add-header", header)]
        if client is not None:
            name, _, address = client.rstrip("]").partition("[")
            message += ["--xclient-name", name, "--xclient-addr", address]
        done = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{self.smtp_port}", "--helo", helo, "--from", f"ann@{helo}",
             "--to", "jo@example.net", *message, "--timeout", "20"],
            capture_output=True, text=True, timeout=60,
        )
        replies = [line[4:] for line in done.stdout.splitlines() if line.startswith(("<-  ", "<** "))]
        return replies[-2] if len(replies) >= 2 else done.stdout  # the line before QUIT's 221

    def log(self) -> str:
        path = self.folder / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)


def _policy_settings(policy_port: int | None, milter_port: int | None = None,
                     header_checks: Path | None = None) -> list[str]:
    """Mail for example.net, each RCPT TO checked by the policy service on `policy_port` (with
    `header_checks`, a copy of deploy/mta/postfix-header_checks: each message at its end, its
    Received headers logged as docs/enforcement.md sets it up, and XCLIENT allowed from loopback so
    that a test can speak for a remote client), or by the milter on `milter_port` (accepting when it
    cannot be asked, as docs/enforcement.md sets it)."""
    end_of_data = header_checks is not None
    asked = f"check_policy_service inet:127.0.0.1:{policy_port}"
    return [
        "mydestination = example.net, localhost",
        "local_recipient_maps =",
        "alias_maps =",
        "alias_database =",
        "smtpd_helo_required = yes",
        *([f"smtpd_recipient_restrictions = reject_unauth_destination, {asked}, permit"]
          if policy_port and not end_of_data else []),
        *([f"smtpd_end_of_data_restrictions = {asked}", f"header_checks = regexp:{header_checks}",
           "smtpd_authorized_xclient_hosts = 127.0.0.1"] if end_of_data else []),
        *([f"smtpd_milters = inet:127.0.0.1:{milter_port}", "milter_default_action = accept"] if milter_port else []),
    ]


POSTFIX_HEADER_CHECKS = ROOT / "deploy" / "mta" / "postfix-header_checks"


class Mailboxes:
    """A PostfixInstance that delivers mail for `addresses` (one domain) to a Maildir each (virtual(8))."""

    def __init__(self, folder: Path, addresses: list[str]):
        domains = {address.partition("@")[2] for address in addresses}
        assert len(domains) == 1, f"addresses of one domain please, not {sorted(domains)}"
        self.domain = domains.pop()
        self.base = folder / "mail"
        self.base.mkdir(parents=True)
        # virtual(8) writes as the mailbox owner, here nobody, never root.
        shutil.chown(self.base, user="nobody", group="nogroup")
        # texthash: a lookup table read as it is (no postmap); a trailing slash makes a Maildir.
        mailboxes = folder / "mailboxes"
        mailboxes.write_text("".join(f"{address} {self._folder(address)}/\n" for address in addresses))
        self.postfix = PostfixInstance(folder / "postfix", free_port(), [
            "mydestination = localhost",
            f"virtual_mailbox_domains = {self.domain}",
            f"virtual_mailbox_base = {self.base}",
            f"virtual_mailbox_maps = texthash:{mailboxes}",
            "virtual_uid_maps = static:65534",
            "virtual_gid_maps = static:65534",
            "alias_maps =",
            "alias_database =",
        ])
        self.smtp_port = self.postfix.smtp_port

    @staticmethod
    def _folder(address: str) -> str:
        local, _, domain = address.partition("@")
        return f"{domain}/{local}"

    def messages(self, address: str) -> list[email.message.EmailMessage]:
        """The mail delivered to `address` so far, oldest first."""
        new = self.base / self._folder(address) / "new"
        files = sorted(new.iterdir(), key=lambda f: (f.stat().st_mtime_ns, f.name)) if new.is_dir() else []
        return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]

    def wait_until_delivered(self, timeout: float = 60) -> None:
        """Until Postfix's queue is empty: every mail it accepted so far is in its Maildir (or bounced,
        which leaves a bounce in the queue and times out here)."""
        deadline = time.monotonic() + timeout
        while queued := subprocess.run(["postqueue", "-c", str(self.postfix.config), "-j"], capture_output=True,
                                       text=True, check=True, timeout=30).stdout.strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"mail still queued after {timeout} s:\n{queued}\n"
                                     f"Postfix log:\n{self.postfix.log()[-4000:]}")
            time.sleep(0.2)

    def wait_for(self, address: str, count: int, timeout: float = 60) -> list[email.message.EmailMessage]:
        """The mail delivered to `address` once there are at least `count` (fails after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while len(messages := self.messages(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(messages)} of {count} mails reached {address} in {timeout} s; "
                                     f"Postfix log:\n{self.postfix.log()[-4000:]}")
            time.sleep(0.2)
        return messages


def _postfix_folder(*programs: str) -> Path:
    for program in programs:
        assert shutil.which(program), f"{program} is not installed: deploy/test.sh installs Debian's postfix and swaks"
    # Postfix's own users must reach their folders: pytest's tmp_path is private to root.
    folder = Path(tempfile.mkdtemp(prefix="patchgate-postfix-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture
def postfix():
    """start(policy_port, milter_port=None, end_of_data=False) -> a running PostfixInstance that
    asks the policy service (at RCPT, or at the end of each message) or the milter; stopped after
    the test."""
    folder = _postfix_folder("postfix", "swaks")
    started: list[PostfixInstance] = []

    def start(policy_port: int | None, milter_port: int | None = None, end_of_data: bool = False) -> PostfixInstance:
        checks = None
        if end_of_data:
            # Where Postfix's own users can read it (the checkout may be private to root).
            checks = Path(shutil.copy(POSTFIX_HEADER_CHECKS, folder / f"header_checks{len(started)}"))
        instance = PostfixInstance(folder / str(len(started)), free_port(),
                                   _policy_settings(policy_port, milter_port, checks))
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
    shutil.rmtree(folder, ignore_errors=True)


def publish_decisions_of(settings, logs: Path) -> list:
    """The decisions the policy takes on each log file in `logs` (one server's each), as of its own
    newest line as the stream decides them, put on mail.decisions; the decisions."""
    catalog = load_catalog(settings.catalog_file)
    decided = [decision for log in sorted(logs.iterdir()) for decision in replay(
        read_observations([str(log)], settings.policy, io.StringIO(), datetime.now(UTC), None)[0],
        settings.policy, catalog)]
    publish_decisions(settings, *decided)
    return decided


def publish_decisions(settings, *decisions) -> None:
    """The decisions on mail.decisions, keyed by server as the worker publishes them."""
    producer = kafka_clients.producer(settings, acks="all")
    for decision in decisions:
        producer.send(settings.topic(topics.DECISIONS), key=decision.server_id.encode(),
                      value=ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
    producer.flush()
    producer.close()


def until_cached(cache: Path, decisions: int, timeout: float = 60) -> None:
    """Until `patchgate mta` or `milter` has saved this many decisions to its cache file (asking
    it would be enforcement too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cache.exists() and len(json.loads(cache.read_text())) >= decisions:
            return
        time.sleep(0.3)
    raise AssertionError(f"{cache} did not get {decisions} decisions in {timeout:.0f} s")


EXIM = ROOT / ".exim" / "usr" / "sbin" / "exim4"
EXIM_RCPT_ACL = ROOT / "deploy" / "mta" / "exim-patchgate-rcpt.acl"
EXIM_DATA_ACL = ROOT / "deploy" / "mta" / "exim-patchgate-data.acl"


class EximHost:
    """Debian's Exim with docs/enforcement.md's ACL statements asking the policy service on `policy_port`:
    at RCPT (deploy/mta/exim-patchgate-rcpt.acl) or, with `at_data`, once the message is in
    (deploy/mta/exim-patchgate-data.acl). Each session runs in Exim's host-checking mode (-bh): the
    SMTP dialogue of a client at an address, through the configuration's ACLs, delivering nothing."""

    def __init__(self, folder: Path, policy_port: int, at_data: bool = False):
        (folder / "spool").mkdir(parents=True)
        # Exim writes its spool and logs as the user it runs as.
        shutil.chown(folder / "spool", user="Debian-exim")
        shutil.chown(folder, user="Debian-exim")
        # Exim reads its configuration as its own user, who may not reach into the checkout.
        acl = Path(shutil.copy(EXIM_DATA_ACL if at_data else EXIM_RCPT_ACL, folder))
        self.config = folder / "exim.conf"
        self.config.write_text("\n".join([
            "primary_hostname = mx-test.example.net",
            "domainlist local_domains = example.net",
            f"spool_directory = {folder / 'spool'}",
            f"log_file_path = {folder}/%s.log",
            f"PATCHGATE_POLICY = inet:127.0.0.1:{policy_port}",
            "acl_smtp_rcpt = check_rcpt",
            "acl_smtp_data = check_data",
            "begin acl",
            "check_rcpt:",
            "  require domains = +local_domains",
            *([] if at_data else [f".include {acl}"]),
            "  accept",
            "check_data:",
            *([f".include {acl}"] if at_data else []),
            "  accept",
            "",
        ]))

    def session(self, helo: str, recipients: tuple[str, ...] = ("jo@example.net",),
                address: str = "198.51.100.50", headers: tuple[str, ...] | None = None) -> list[str]:
        """Exim's reply to each RCPT TO of one connection from `address` that says EHLO `helo`;
        with `headers`, then to DATA and to the end of a message that carries them."""
        message = [] if headers is None else [
            "DATA", *headers, f"From: <ann@{helo}>", "Subject: test", "", "hello", "."]
        dialogue = [f"EHLO {helo}", f"MAIL FROM:<ann@{helo}>", *(f"RCPT TO:<{r}>" for r in recipients), *message,
                    "QUIT"]
        done = subprocess.run([str(EXIM), "-C", str(self.config), "-bh", address],
                              input="".join(f"{line}\r\n" for line in dialogue), capture_output=True, text=True,
                              timeout=60)
        replies = smtp_replies(done.stdout)
        # In order: greeting, EHLO, MAIL, each RCPT, (DATA, end of data,) QUIT.
        assert len(replies) == 4 + len(recipients) + (2 if message else 0), done.stdout + done.stderr
        return replies[3:-1]


def smtp_replies(dialogue: str) -> list[str]:
    """Each reply of an SMTP server's side of a dialogue as one line: a reply of several lines (Exim
    wraps long texts) joined, its code and enhanced code said once."""
    replies: list[str] = []
    parts: list[str] = []
    for line in dialogue.splitlines():
        found = re.match(r"(\d{3})([ -])(?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)", line.rstrip("\r"))
        if not found:
            continue
        code, more, enhanced, text = found.groups()
        parts.append(text if parts or not enhanced else f"{enhanced} {text}")
        if more == " ":
            replies.append(f"{code} {' '.join(parts)}")
            parts = []
    return replies


@pytest.fixture
def exim():
    """start(policy_port, at_data=False) -> an EximHost."""
    assert EXIM.exists(), f"{EXIM} is missing: deploy/test.sh fetches Debian's Exim (deploy/mta/debian-exim.sh)"
    # Exim's user must reach its folders: pytest's tmp_path is private to root.
    folder = Path(tempfile.mkdtemp(prefix="patchgate-exim-"))
    folder.chmod(0o755)
    started: list[EximHost] = []

    def start(policy_port: int, at_data: bool = False) -> EximHost:
        host = EximHost(folder / str(len(started)), policy_port, at_data)
        started.append(host)
        return host

    yield start
    shutil.rmtree(folder, ignore_errors=True)


SENDMAIL = ROOT / ".sendmail" / "usr" / "libexec" / "sendmail" / "sendmail"
SENDMAIL_MILTER = ROOT / "deploy" / "mta" / "sendmail-patchgate.m4"


class SendmailHost:
    """Debian's Sendmail with docs/enforcement.md's milter lines (deploy/mta/sendmail-patchgate.m4) pointing
    at `milter_port`, its sendmail.cf built by m4 from Debian's sendmail-cf. Each session is one SMTP
    conversation on Sendmail's standard input and output (-bs), a reply awaited before each command
    (Sendmail refuses a client that talks first), in a UTS namespace of its own whose host name has a
    domain: Sendmail otherwise waits a minute for DNS to qualify this machine's."""

    def __init__(self, folder: Path, milter_port: int):
        (folder / "queue").mkdir(parents=True)
        (folder / "service.switch").write_text("hosts files\naliases files\n")
        mc = "\n".join([
            "include(`/usr/share/sendmail/cf/m4/cf.m4')dnl",
            "OSTYPE(`linux')dnl",
            "define(`confDOMAIN_NAME', `mx-test.example.net')dnl",
            f"define(`confSERVICE_SWITCH_FILE', `{folder / 'service.switch'}')dnl",
            "define(`confDONT_PROBE_INTERFACES', `True')dnl",
            f"define(`QUEUE_DIR', `{folder / 'queue'}')dnl",
            "define(`ALIAS_FILE', `')dnl",
            f"define(`confPID_FILE', `{folder / 'sendmail.pid'}')dnl",
            "define(`confDELIVERY_MODE', `queueonly')dnl",
            "FEATURE(`nocanonify')dnl",
            "FEATURE(`accept_unresolvable_domains')dnl",
            "LOCAL_DOMAIN(`example.net')dnl",
            f"define(`PATCHGATE_MILTER', `inet:{milter_port}@127.0.0.1')dnl",
            f"include(`{SENDMAIL_MILTER}')dnl",
            "MAILER(`local')dnl",
            "MAILER(`smtp')dnl",
            "",
        ])
        self.config = folder / "sendmail.cf"
        self.config.write_text(subprocess.run(["m4"], input=mc, capture_output=True, text=True, check=True).stdout)

    def session(self, helo: str, recipients: tuple[str, ...] = ("root@example.net",),
                headers: tuple[str, ...] = ()) -> list[str]:
        """Sendmail's reply to each RCPT TO of one SMTP session that says EHLO `helo`, then to the
        end of a message with `headers` (a refused recipient is not sent the message: the last
        reply is then to DATA)."""
        command = f"hostname mx-test.example.net && exec {SENDMAIL} -C {self.config} -bs"
        process = subprocess.Popen(["unshare", "--uts", "sh", "-c", command], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdin is not None and process.stdout is not None

        def reply() -> str:
            lines = []
            while line := process.stdout.readline():
                lines.append(line.rstrip("\r\n"))
                if line[3:4] == " ":
                    break
            return "\n".join(lines)

        def say(line: str) -> None:
            process.stdin.write(f"{line}\r\n")
            process.stdin.flush()

        try:
            dialogue = [reply()]
            for line in [f"EHLO {helo}", f"MAIL FROM:<ann@{helo}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]:
                say(line)
                dialogue.append(reply())
            if dialogue[-1].startswith("354"):
                for line in [*headers, f"From: <ann@{helo}>", "Subject: test", "", "hello", "."]:
                    say(line)
                dialogue.append(reply())
            say("QUIT")
            dialogue.append(reply())
        finally:
            process.stdin.close()
            process.wait(30)
        replies = smtp_replies("\n".join(dialogue))
        assert len(replies) >= 5 + len(recipients), \
            "\n".join(dialogue) + (process.stderr.read() if process.stderr else "")
        # greeting, EHLO, MAIL, each RCPT, DATA (and the end of data), QUIT
        return replies[3:-1]


@pytest.fixture
def sendmail():
    """start(milter_port) -> a SendmailHost."""
    assert SENDMAIL.exists(), f"{SENDMAIL} is missing: deploy/test.sh fetches it (deploy/mta/debian-sendmail.sh)"
    folder = Path(tempfile.mkdtemp(prefix="patchgate-sendmail-"))
    started: list[SendmailHost] = []

    def start(milter_port: int) -> SendmailHost:
        host = SendmailHost(folder / str(len(started)), milter_port)
        started.append(host)
        return host

    yield start
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mailboxes():
    """start(addresses) -> a running Postfix on a loopback port (`.smtp_port`) that delivers mail for
    these addresses to a Maildir each (`.messages(address)`, `.wait_for(address, count)`,
    `.wait_until_delivered()`); stopped after the test. Mail for other addresses of their domain bounces."""
    folder = _postfix_folder("postfix")
    started: list[Mailboxes] = []

    def start(addresses: list[str]) -> Mailboxes:
        boxes = Mailboxes(folder / str(len(started)), addresses)
        started.append(boxes)
        return boxes

    yield start
    for boxes in started:
        boxes.postfix.stop()
    shutil.rmtree(folder, ignore_errors=True)
