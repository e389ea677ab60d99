"""Postfix mail logs (syslog): one trace per message, assembled from the lines of its queue id.

    smtpd:   QID: client=HOST[IP]                     the server that connected to us
    cleanup: QID: message-id=<...>
    cleanup: QID: warning: header Received: VALUE from HOST[IP]; from=<..> to=<..> proto=.. helo=<..>
             (a header_checks WARN rule, a common way to ship Received headers from an MTA)
    qmgr:    QID: from=<SENDER>, size=N, nrcpt=M (queue active)   the message is complete

Messages still open are kept in the parser state, at most MAX_OPEN of them; past that the oldest
is emitted with what is known, so nothing is dropped.
"""
from __future__ import annotations

import re
from datetime import datetime

from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.parsers.syslog import split_stamp

FORMAT = "postfix"
MAX_OPEN = 10_000
_PROGRAM = re.compile(r"^(?P<host>\S+) (?P<program>postfix[\w./-]*/\w+)\[\d+\]: (?P<message>.*)$")
_QUEUED = re.compile(r"^(?P<qid>[0-9A-Za-z]{6,20}): (?P<what>.*)$")
_CLIENT = re.compile(r"^client=(?P<host>[^\[\s]+)\[(?P<ip>[^\]]*)\]")
_HEADER_WARN = re.compile(
    r"^warning: header Received: (?P<value>.*) from (?P<host>[^\s\[]+)\[(?P<ip>[^\]]*)\]; "
    r"from=<(?P<sender>[^>]*)> to=<(?P<to>[^>]*)>"
)
_MESSAGE_ID = re.compile(r"^message-id=(?P<id><[^>]*>|\S+)")
_QUEUE_ACTIVE = re.compile(r"^from=<(?P<sender>[^>]*)>, size=(?P<size>\d+), nrcpt=\d+ \(queue active\)")


def looks_like(line: str) -> bool:
    return " postfix" in line and bool(re.search(r" postfix[\w./-]*/\w+\[\d+\]: ", line))


def initial_state() -> dict:
    return {"open": {}}


def parse_line(state: dict, line: str, position: SourcePosition, reference: datetime | None) -> tuple[dict, list]:
    text = line.rstrip("\r\n")
    if not text.strip():
        return state, []
    stamped = split_stamp(text, reference)
    if isinstance(stamped, str):
        return state, [ParseError(position, stamped, field="timestamp", raw=text)]
    at, rest = stamped
    program = _PROGRAM.match(rest)
    if not program:
        return state, [ParseError(position, "not a postfix/<daemon>[pid]: line", field="program", raw=text)]
    queued = _QUEUED.match(program.group("message"))
    if not queued:
        return state, []
    qid, what = queued.group("qid"), queued.group("what")
    open_messages = dict(state["open"])
    message = dict(open_messages.get(qid) or {"at": at.isoformat(), "line": position.line, "received": []})
    emitted: list = []
    if found := _CLIENT.match(what):
        message.update(client_host=found.group("host").lower(), client_ip=found.group("ip"))
    elif found := _HEADER_WARN.match(what):
        message["received"] = message["received"] + [found.group("value")]
        message.setdefault("client_host", found.group("host").lower())
        message.setdefault("client_ip", found.group("ip"))
        message.setdefault("recipient", found.group("to"))
    elif found := _MESSAGE_ID.match(what):
        message["message_id"] = found.group("id")
    elif found := _QUEUE_ACTIVE.match(what):
        message.update(sender=found.group("sender"), size=int(found.group("size")))
        open_messages.pop(qid, None)
        return {"open": open_messages}, [_trace(message, position)]
    else:
        return state, []
    open_messages[qid] = message
    while len(open_messages) > MAX_OPEN:
        oldest = next(iter(open_messages))
        emitted.append(_trace(open_messages.pop(oldest), position))
    return {"open": open_messages}, emitted


def finish(state: dict, position: SourcePosition) -> tuple[dict, list]:
    """At the end of a file, emit the messages whose queue-active line never came."""
    return initial_state(), [_trace(m, position) for m in state["open"].values()]


def _trace(message: dict, position: SourcePosition) -> MessageTrace:
    host = message.get("client_host")
    return MessageTrace(
        event_time=datetime.fromisoformat(message["at"]),
        source_format=FORMAT,
        position=SourcePosition(position.source, message.get("line"), None),
        message_id=message.get("message_id"),
        sender=message.get("sender") or None,
        recipients=(message["recipient"],) if message.get("recipient") else (),
        total_bytes=message.get("size"),
        client_ip=message.get("client_ip") or None,
        client_hostname=None if host in (None, "unknown") else host,
        # header_checks logs headers top down: the newest Received header comes first.
        received=tuple(message["received"]),
    )
