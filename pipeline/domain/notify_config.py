"""The `[notify]` table: who hears about an org's servers, and through which relay.

    [notify]
    smtp_host = "127.0.0.1"       the relay `patchgate notify` hands notices to
    smtp_port = 25                (default: 465 with smtp_tls = "tls", else 25)
    smtp_tls = "starttls"         "none", "starttls" or "tls" (implicit TLS, as on port 465); default:
                                  "none" for a loopback relay, "starttls" for any other
    smtp_username = "patchgate@contoso.example"   logs in (AUTH) after TLS; needs smtp_tls
    smtp_password_file = "/run/secrets/smtp"      its password, unless PATCHGATE_SMTP_PASSWORD has it
    smtp_ca_file = "/etc/patchgate/relay-ca.pem"  the CAs the relay's certificate is checked
                                  against (default: the system's)
    sender = "patchgate@localhost"
    report_url = "http://127.0.0.1:6066"   where the links in a notice point (the sink's web port)
    lead_days = 7                 how long before throttling or blocking starts a warning goes out
    [notify.contacts]
    contoso = ["exchange-admins@contoso.example"]

The password itself is never read from this table: the file it names, or the environment, is read
by `patchgate notify` at its start (pipeline.edges.notify), as no other command needs it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.domain.config import ConfigError, integer, strings, table, text
from pipeline.domain.hostnames import is_loopback

_KEYS = ("smtp_host", "smtp_port", "smtp_tls", "smtp_username", "smtp_password_file", "smtp_ca_file", "sender",
         "report_url", "lead_days", "contacts")
TLS_MODES = ("none", "starttls", "tls")
PASSWORD_VARIABLE = "PATCHGATE_SMTP_PASSWORD"


@dataclass(frozen=True)
class NotifyConfig:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    # "none", "starttls" or "tls"; from_mapping decides the default from smtp_host.
    smtp_tls: str = "none"
    smtp_username: str | None = None
    smtp_password_file: Path | None = None
    smtp_ca_file: Path | None = None
    sender: str = "patchgate@localhost"
    report_url: str = "http://127.0.0.1:6066"
    lead_days: int = 7
    # Org (lower case) -> addresses.
    contacts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Any) -> NotifyConfig:
        """Read the `[notify]` table; raises ConfigError for a key it does not know, a value that
        does not read, or settings that would send a password in clear text."""
        if isinstance(data, Mapping) and "smtp_password" in data:
            raise ConfigError("notify.smtp_password", "is not read from the config file: put the password in a file "
                                                      f"named by notify.smtp_password_file, or in {PASSWORD_VARIABLE}")
        given = table(data, "notify", _KEYS)
        values: dict[str, Any] = {}
        for name in ("smtp_host", "smtp_username", "sender", "report_url"):
            if name in given:
                values[name] = text(given[name], f"notify.{name}")
        for name in ("smtp_password_file", "smtp_ca_file"):
            if name in given:
                values[name] = Path(text(given[name], f"notify.{name}", shape="the path of a file"))
        tls = values["smtp_tls"] = _tls_mode(given, values.get("smtp_host", cls.smtp_host))
        values["smtp_port"] = integer(given["smtp_port"], "notify.smtp_port", 1, 65535) if "smtp_port" in given \
            else 465 if tls == "tls" else 25
        if "lead_days" in given:
            values["lead_days"] = integer(given["lead_days"], "notify.lead_days", 0, 365)
        if "contacts" in given:
            contacts = table(given["contacts"], "notify.contacts", given["contacts"] if isinstance(
                given["contacts"], Mapping) else ())
            values["contacts"] = {org.lower(): strings(addresses, f"notify.contacts.{org}")
                                  for org, addresses in contacts.items()}
        _check_secured(values, "smtp_tls" in given)
        return cls(**values)

    def contacts_of(self, org: str | None) -> tuple[str, ...]:
        return self.contacts.get(org.lower(), ()) if org else ()


def _tls_mode(given: Mapping[str, Any], host: str) -> str:
    """The smtp_tls given, else the default: nobody can listen on a loopback relay's connection (and
    a local MTA seldom has a certificate for 127.0.0.1), while the way to any other host crosses a
    network, so its certificate is checked and nothing goes in clear text unless asked for."""
    if "smtp_tls" not in given:
        return "none" if is_loopback(host, None) else "starttls"
    mode = text(given["smtp_tls"], "notify.smtp_tls", shape=f"one of {', '.join(TLS_MODES)}")
    if mode.lower() not in TLS_MODES:
        raise ConfigError("notify.smtp_tls", f"must be one of {', '.join(TLS_MODES)}, got {mode!r}")
    return mode.lower()


def _check_secured(values: Mapping[str, Any], tls_given: bool) -> None:
    """A login and a CA file make sense over TLS only; a password file, with a login."""
    if values["smtp_tls"] == "none":
        host = values.get("smtp_host", NotifyConfig.smtp_host)
        why = 'notify.smtp_tls is "none"' if tls_given else \
            f'notify.smtp_tls defaults to "none" for the loopback relay {host}'
        for name, problem in (("smtp_username", "a password is sent over TLS only"),
                              ("smtp_password_file", "a password is sent over TLS only"),
                              ("smtp_ca_file", "no certificate is checked")):
            if name in values:
                raise ConfigError(f"notify.{name}", f'is set, but {why}: {problem} (set smtp_tls to "starttls" or '
                                                    '"tls")')
    if "smtp_password_file" in values and "smtp_username" not in values:
        raise ConfigError("notify.smtp_password_file", "is set without notify.smtp_username, the login it belongs to")
