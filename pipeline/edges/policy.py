"""The Postfix SMTP access policy delegation protocol, answered from the decision cache.

A request is name=value lines ended by an empty line; the answer is one `action=...` line and an
empty line. Wall-clock time enters here, at SMTP time: the minute of the hour picks the window.
"""
from __future__ import annotations

from datetime import datetime

from pipeline.domain.policy import Decision
from pipeline.domain.windows import BLOCK, THROTTLE, action_at, block_reply, throttle_reply

DUNNO = "DUNNO"
# Attributes that name the connecting server, best first; "unknown" is Postfix's word for none.
NAME_ATTRIBUTES = ("client_name", "reverse_client_name", "helo_name", "client_address")


class RequestError(ValueError):
    """A request line that is not name=value."""


# An attribute that may come once per header (patchgate's own, which Exim's DATA ACL sends): its
# values are kept one per line, in the order they came.
REPEATED = ("received",)


def parse_request(lines: list[str]) -> dict[str, str]:
    request: dict[str, str] = {}
    for line in lines:
        name, equals, value = line.partition("=")
        if not equals or not name:
            raise RequestError(f"not a name=value line: {line[:80]!r}")
        name, value = name.strip(), value.strip()
        if name in REPEATED and name in request:
            request[name] += "\n" + value
        else:
            request[name] = value
    return request


def server_names(request: dict[str, str]) -> list[str]:
    names = []
    for attribute in NAME_ATTRIBUTES:
        value = request.get(attribute, "").strip().strip("[]").lower()
        if value and value != "unknown" and value not in names:
            names.append(value)
    return names


def would(kind: str) -> str:
    """The enforcement kind recorded for an attempt accepted in report-only mode: would-throttle,
    would-block (what mail.enforcement's readers count apart from the real ones)."""
    return f"would-{kind}"


def action_for(decision: Decision | None, now: datetime) -> tuple[str, str | None]:
    """(Postfix action, enforcement kind or None) for the decision at wall-clock `now`."""
    if decision is None:
        return DUNNO, None
    kind = action_at(decision.server_id, decision.throttle_minutes_per_hour, decision.block_minutes_per_hour,
                     now.minute)
    if kind == BLOCK:
        return block_reply(decision.block_minutes_per_hour), BLOCK
    if kind == THROTTLE:
        return throttle_reply(decision.throttle_minutes_per_hour), THROTTLE
    return DUNNO, None
