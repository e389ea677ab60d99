"""What an operator's commands refuse: `patchgate exempt` that would switch enforcement off or last
too long (pipeline.domain.control), and `patchgate notify` through a relay that would take the
login in clear text (pipeline.edges.notify)."""
from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from abuse_rig import SAMPLES_CONFIG, Rig, Row, free_port
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pipeline.domain.config import PolicyConfig


def control_checks(rig: Rig) -> list[Row]:
    today = datetime.now(UTC).date()
    surface = "`patchgate exempt`, the running worker"
    patterns = ("*", "*.*", "?*")
    done = [rig.patchgate("exempt", pattern, "--until", str(today + timedelta(days=30)), "--reason", "x")
            for pattern in patterns]
    lifted = rig.patchgate("unexempt", "*")
    outcome = (f"exit {', '.join(str(d.status) for d in done)}: `{done[0].stdout.strip()}`; then `unexempt '*'` "
               f"exit {lifted.status}: `{lifted.stdout.strip()}`")
    rows = [Row(surface, f"{', '.join(f'`exempt {p!r}`' for p in patterns)} --until today+30d --reason x", outcome,
                all(d.status == 1 and "matches every server" in d.stdout for d in done)
                and lifted.status == 1 and "no exemption to lift" in lifted.stdout)]
    longest = PolicyConfig().max_exemption_days
    too_long = rig.patchgate("exempt", "mail.fabrikam.example", "--until", str(today + timedelta(days=400)),
                             "--reason", "x")
    rows.append(Row(surface, "`exempt mail.fabrikam.example --until today+400d --reason x`",
                    f"exit {too_long.status}: `{too_long.stdout.strip()}`",
                    too_long.status == 1 and f"at most {longest} days" in too_long.stdout))
    odd = [rig.patchgate("exempt", "mail.fabrikam.example", "--until", until, "--reason", reason)
           for until, reason in ((str(today - timedelta(days=1)), "x"), (str(today + timedelta(days=7)), ""),
                                 ("next tuesday", "x"))]
    rows.append(Row(surface, "`exempt` until yesterday; with an empty reason; `--until 'next tuesday'`",
                    "; ".join(f"exit {d.status}: `{(d.stdout or d.stderr).strip()[:120]}`" for d in odd),
                    [d.status for d in odd] == [1, 1, 2]))
    return rows


class _Relay:
    """An SMTP relay that offers no STARTTLS but offers AUTH in clear text (what a relay whose
    STARTTLS an attacker stripped looks like), and what each client sent it."""

    def __init__(self, host: str):
        self.commands: list[str] = []
        self.logins: list[str] = []
        self.host, self.port = host, free_port(host)
        self.controller = Controller(self, hostname=host, port=self.port, auth_require_tls=False,
                                     authenticator=self._authenticate, auth_exclude_mechanism=["CRAM-MD5"])
        self._log = _Commands(self.commands)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append(mechanism)
        return AuthResult(success=False)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.commands.append("DATA (a message)")
        return "250 OK"

    def __enter__(self) -> _Relay:
        logging.getLogger("mail.log").addHandler(self._log)
        logging.getLogger("mail.log").setLevel(logging.INFO)
        self.controller.start()
        return self

    def __exit__(self, *_) -> None:
        self.controller.stop()
        logging.getLogger("mail.log").removeHandler(self._log)


class _Commands(logging.Handler):
    """aiosmtpd logs each line a client sends (`peer >> b'LINE'`): its command words, in order."""

    def __init__(self, into: list[str]):
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r">> b['\"]([A-Za-z]+)", record.getMessage())
        if found:
            self.into.append(found.group(1).upper())


def notify_checks(rig: Rig) -> list[Row]:
    if rig.web_host == "127.0.0.1":
        return [Row("`patchgate notify`", "a relay beyond loopback without STARTTLS",
                    "not run: this machine has no address beyond loopback", False)]
    password = "abuse-check-password-" + rig.viewer_token[:8]
    with _Relay(rig.web_host) as relay:
        config = rig.folder / "notify.toml"
        config.write_text(SAMPLES_CONFIG.read_text() + f"""
[notify]
smtp_host = "{relay.host}"
smtp_port = {relay.port}
smtp_username = "patchgate@contoso.example"
sender = "patchgate@contoso.example"
[notify.contacts]
"contoso.example" = ["exchange-admins@contoso.example"]
""")
        done = rig.patchgate("notify", env={"PATCHGATE_CONFIG": str(config), "PATCHGATE_SMTP_PASSWORD": password})
    said = next((line.split(": ", 1)[-1] for line in done.stderr.splitlines() if "cannot send through" in line), "")
    final = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    outcome = (f"exit {done.status}; `{said[:230]}`; last line `{final[:120]}`; the relay heard "
               f"{' '.join(relay.commands) or 'nothing'} ({len(relay.logins)} logins, "
               f"{relay.commands.count('MAIL')} mails)")
    return [Row("`patchgate notify`", f"a relay on {relay.host}:{relay.port} (beyond loopback, smtp_tls left to its "
                "default) that offers AUTH but no STARTTLS, with smtp_username and a password set", outcome,
                done.status == 1 and "offers no STARTTLS" in said and not relay.logins
                and "AUTH" not in relay.commands and "MAIL" not in relay.commands)]
