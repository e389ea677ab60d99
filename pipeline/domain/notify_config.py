"""The `[notify]` table: who hears about an org's servers, and through which relay.

    [notify]
    smtp_host = "127.0.0.1"       the relay `patchgate notify` hands notices to
    smtp_port = 25
    sender = "patchgate@localhost"
    report_url = "http://127.0.0.1:6066"   where the links in a notice point (the sink's web port)
    lead_days = 7                 how long before throttling or blocking starts a warning goes out
    [notify.contacts]
    contoso = ["exchange-admins@contoso.example"]
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.config import integer, strings, table, text

_KEYS = ("smtp_host", "smtp_port", "sender", "report_url", "lead_days", "contacts")


@dataclass(frozen=True)
class NotifyConfig:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "patchgate@localhost"
    report_url: str = "http://127.0.0.1:6066"
    lead_days: int = 7
    # Org (lower case) -> addresses.
    contacts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Any) -> NotifyConfig:
        """Read the `[notify]` table; raises ConfigError for a key it does not know or a value that
        does not read."""
        given = table(data, "notify", _KEYS)
        values: dict[str, Any] = {}
        for name in ("smtp_host", "sender", "report_url"):
            if name in given:
                values[name] = text(given[name], f"notify.{name}")
        if "smtp_port" in given:
            values["smtp_port"] = integer(given["smtp_port"], "notify.smtp_port", 1, 65535)
        if "lead_days" in given:
            values["lead_days"] = integer(given["lead_days"], "notify.lead_days", 0, 365)
        if "contacts" in given:
            contacts = table(given["contacts"], "notify.contacts", given["contacts"] if isinstance(
                given["contacts"], Mapping) else ())
            values["contacts"] = {org.lower(): strings(addresses, f"notify.contacts.{org}")
                                  for org, addresses in contacts.items()}
        return cls(**values)

    def contacts_of(self, org: str | None) -> tuple[str, ...]:
        return self.contacts.get(org.lower(), ()) if org else ()
