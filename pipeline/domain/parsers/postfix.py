"""Postfix mail logs (syslog): one trace per message, assembled from the lines of its queue id.

    smtpd:   QID: client=HOST[IP]                     the server that connected to us
             (not a server: a loopback client, such as a content filter handing back what it was
             given, whose message was counted when it first came in; or a user's mail program:
             sasl_method= on the line, or a submission/smtps service)
    cleanup: QID: message-id=<...>
    cleanup: QID: warning: header Received: VALUE from HOST[IP]; from=<..> to=<..> proto=.. helo=<..>
             (a header_checks WARN rule, a common way to ship Received headers from an MTA; cleanup
             writes control characters, such as a folded header's line breaks, as "?", and at most
             200 characters of the header)
    qmgr:    QID: from=<SENDER>, size=N, nrcpt=M (queue active)   the message is complete

Lines of other programs in the same file (amavis, dovecot, opendkim, ...) are skipped.

Messages still open live in an OpenMessages store, one entry per queue id, so a line changes one
small entry and never all of them. They are bounded: a message whose "queue active" line has not
come MAX_OPEN_AGE_MS of event time after its first line (rejected in cleanup, lines not logged),
or that is beyond the MAX_OPEN newest of its source, is emitted with what is known. Nothing is
dropped.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import ClassVar, Protocol

from pipeline.domain.events import MessageTrace, SourcePosition, epoch_ms, from_epoch_ms
from pipeline.domain.hostnames import is_loopback
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers.syslog import program, split_stamp, without_stamp

FORMAT = "postfix"
MAX_OPEN = 100_000
MAX_OPEN_AGE_MS = 3_600_000

_PROGRAM = re.compile(r"^(?P<host>\S+) (?P<program>postfix[\w./-]*/[\w-]+)\[\d+\]: (?P<message>.*)$")
# Programs whose lines are read here (or reported when unreadable); other programs' lines are skipped.
_MTAS = ("postfix", "exim")
# master.cf services that take mail from users' mail programs (their syslog_name by convention).
_USER_SERVICES = re.compile(r"/(?:submissions?|smtps)/")
_QUEUED = re.compile(r"^(?P<qid>[0-9A-Za-z]{6,20}): (?P<what>.*)$")
_CLIENT = re.compile(r"^client=(?P<host>[^\[\s]+)\[(?P<ip>[^\]]*)\]")
_HEADER_WARN = re.compile(
    r"^warning: header Received: (?P<value>.*) from (?P<host>[^\s\[]+)\[(?P<ip>[^\]]*)\]; "
    r"from=<(?P<sender>[^>]*)> to=<(?P<to>[^>]*)>"
)
# cleanup logs a header's first 200 bytes ("%.200s"), its name included.
_LOGGED_HEADER_BYTES = 200 - len("Received: ")
_MESSAGE_ID = re.compile(r"^message-id=(?P<id><[^>]*>|\S+)")
_QUEUE_ACTIVE = re.compile(r"^from=<(?P<sender>[^>]*)>, size=(?P<size>\d+), nrcpt=\d+ \(queue active\)")


class OpenMessages(Protocol):
    """The open messages of one source by queue id (the stream: a table; evaluate: a dict)."""

    def get(self, qid: str) -> dict | None: ...

    def put(self, qid: str, message: dict) -> None: ...

    def delete(self, qid: str) -> None: ...

    def items(self) -> Iterable[tuple[str, dict]]: ...


class MemoryOpenMessages(dict):
    """OpenMessages in a dict: for `evaluate` and tests."""

    def put(self, qid: str, message: dict) -> None:
        self[qid] = message

    def delete(self, qid: str) -> None:
        self.pop(qid, None)


def looks_like(line: str) -> bool:
    return " postfix" in line and bool(re.search(r" postfix[\w./-]*/[\w-]+\[\d+\]: ", line))


def syslog_other_program(line: str) -> bool:
    """A syslog line of a program other than an MTA read here (amavis, dovecot, opendkim, ...): a
    mail log interleaves them, and they are skipped without complaint."""
    rest = without_stamp(line.rstrip("\r\n"))
    return rest is not None and _other_program(rest)


def _other_program(rest: str) -> bool:
    name = program(rest)
    return name is not None and not name.startswith(_MTAS)


@dataclass
class PostfixState:
    """A source's state while it is a Postfix log: how many messages it holds open, the event time
    of the oldest one's first line, and the newest event time of the source's queued lines."""

    FORMAT: ClassVar[str] = FORMAT

    open: int = 0
    oldest_ms: int | None = None
    newest_ms: int | None = None

    def to_json(self) -> dict:
        return {"open": self.open, "oldest_ms": self.oldest_ms, "newest_ms": self.newest_ms}

    @classmethod
    def from_json(cls, data: dict) -> PostfixState:
        return cls(data["open"], data["oldest_ms"], data["newest_ms"])


def parse(state: PostfixState, run: LineRun, start: int, end: int, out, store: OpenMessages,
          zone: tzinfo = UTC) -> None:
    """`zone`: of the time stamps without an offset (formats.syslog_timezone)."""
    lines = run.lines
    for index in range(start, end):
        text = lines[index].rstrip("\r\n")
        if not text.strip():
            continue
        stamped = split_stamp(text, run.reference, zone)
        if isinstance(stamped, str):
            out.error(run.error(index, stamped, field="timestamp"))
            continue
        at, rest = stamped
        by_postfix = _PROGRAM.match(rest)
        if not by_postfix:
            if not _other_program(rest):
                out.error(run.error(index, "not a postfix/<daemon>[pid]: line", field="program"))
            continue
        queued = _QUEUED.match(by_postfix.group("message"))
        if queued:
            _queued_line(state, run, index, epoch_ms(at), by_postfix.group("program"), queued.group("qid"),
                         queued.group("what"), out, store)
    _bound(state, run.source, out, store)


def _queued_line(state: PostfixState, run: LineRun, index: int, at_ms: int, daemon: str, qid: str, what: str, out,
                 store: OpenMessages) -> None:
    client = header = message_id = active = None
    if not ((client := _CLIENT.match(what)) or (header := _HEADER_WARN.match(what))
            or (message_id := _MESSAGE_ID.match(what)) or (active := _QUEUE_ACTIVE.match(what))):
        return
    state.newest_ms = max(state.newest_ms or at_ms, at_ms)
    message = store.get(qid)
    new = message is None
    if message is None:
        message = {"at": at_ms, "place": run.position(index).stored(), "received": []}
    if client:
        host, ip = client.group("host").lower(), client.group("ip")
        if is_loopback(host, ip) or "sasl_method=" in what or _USER_SERVICES.search(daemon):
            # No server handed it in, so its Received headers name none either: a content filter's
            # copy repeats those of the message it was given, and would count that one twice.
            message["no_server"] = True
        else:
            # The service (master.cf's syslog_name) is the inbound path the enforcement scope names.
            message.update(client_host=host, client_ip=ip, service=daemon)
    elif header:
        if not message.get("no_server"):
            message["received"].append(_logged_header(header.group("value")))
            message.setdefault("client_host", header.group("host").lower())
            message.setdefault("client_ip", header.group("ip"))
        message.setdefault("recipient", header.group("to"))
    elif message_id:
        message["message_id"] = message_id.group("id")
    elif active:
        message.update(sender=active.group("sender"), size=int(active.group("size")))
        if not new:
            store.delete(qid)
            state.open -= 1
            if not state.open:
                state.oldest_ms = None
        out.trace(_trace(message, run.source))
        return
    store.put(qid, message)
    if new:
        state.open += 1
        state.oldest_ms = min(state.oldest_ms or at_ms, at_ms)


def _logged_header(value: str) -> str:
    """A Received header as cleanup logged it, with spaces for the control characters it wrote as
    "?". A header cut at the length limit loses its last word, which may be cut short: half a build
    number would be a wrong build."""
    value = value.replace("?", " ")
    if len(value.encode("utf-8")) == _LOGGED_HEADER_BYTES:
        value = value.rpartition(" ")[0]
    return value


def _bound(state: PostfixState, source: str, out, store: OpenMessages) -> None:
    """Emit the messages that stayed open too long, or beyond the MAX_OPEN newest.

    A pass also takes what would expire within the next tenth of the age, and leaves a tenth of
    MAX_OPEN free, so passes over the open messages stay rare.
    """
    newest = state.newest_ms
    if newest is None:  # no queued line yet, so no message open
        return
    too_old = state.oldest_ms is not None and newest - state.oldest_ms > MAX_OPEN_AGE_MS
    if not too_old and state.open <= MAX_OPEN:
        return
    horizon = newest - MAX_OPEN_AGE_MS + MAX_OPEN_AGE_MS // 10
    waiting = sorted(store.items(), key=lambda item: (item[1]["at"], item[0]))
    expired = sum(1 for _, message in waiting if message["at"] < horizon)
    if len(waiting) - expired > MAX_OPEN:
        expired = len(waiting) - (MAX_OPEN - MAX_OPEN // 10)
    for qid, message in waiting[:expired]:
        store.delete(qid)
        out.trace(_trace(message, source))
    rest = waiting[expired:]
    state.open = len(rest)
    state.oldest_ms = rest[0][1]["at"] if rest else None


def finish(state: PostfixState, source: str, out, store: OpenMessages) -> None:
    """At the end of a source, emit the messages whose queue-active line never came."""
    for qid, message in sorted(store.items(), key=lambda item: (item[1]["at"], item[0])):
        store.delete(qid)
        out.trace(_trace(message, source))
    state.open, state.oldest_ms, state.newest_ms = 0, None, None


def _trace(message: dict, source: str) -> MessageTrace:
    host = message.get("client_host")
    return MessageTrace(
        event_time=from_epoch_ms(message["at"]),
        source_format=FORMAT,
        # (Messages stored before the place was kept have their line only.)
        position=SourcePosition.restored(source, message["place"]) if "place" in message
        else SourcePosition(source, message.get("line"), None),
        message_id=message.get("message_id"),
        sender=message.get("sender") or None,
        recipients=(message["recipient"],) if message.get("recipient") else (),
        total_bytes=message.get("size"),
        client_ip=message.get("client_ip") or None,
        client_hostname=None if host in (None, "unknown") else host,
        connector_id=message.get("service"),
        # header_checks logs headers top down: the newest Received header comes first.
        received=tuple(message["received"]),
    )
