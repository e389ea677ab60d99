"""Generated mail logs for the throughput benchmarks, in the formats real servers write.

Every source is one file's worth of lines (bytes with their line ends), with markers on the lines
that complete a message: (line index, server, event time in ms) for each server the message names,
which lets a benchmark match a decision to the line that caused it.

    msgtrk   one Exchange message tracking log per server (RECEIVE and SEND rows, 2013+ fields, CRLF)
    postfix  Postfix syslog per MX, 9 lines a message, with header_checks WARN lines carrying the
             Received headers (our MX's and the sending Exchange server's)
    headers  mbox files of messages: Received chains of three hops, DKIM, a short body
"""
from __future__ import annotations

import csv
import functools
import io
import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

# The checkout on the path (the fault campaign imports this module first): testkit/ is there.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit.msgtrk import FIELDS_2013_LATER  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=100)
# Builds that walk through the stages (unsupported, outdated) and one that stays current.
BUILDS = ("15.00.1497.002", "15.01.2507.039", "15.01.2507.009", "15.02.1748.039")
TRUSTED = ("*.outlook.com", "*.protection.outlook.com", "mx*.bench.example")


@dataclass
class Source:
    name: str
    lines: list[bytes] = field(default_factory=list)
    # line index -> [(server, event ms)] for lines that complete a message
    markers: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    messages: set[tuple[str, str]] = field(default_factory=set)


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _server(n: int) -> tuple[str, str, str]:
    """(host, domain, long build) of the n-th sending server."""
    domain = f"org{n % 997:03d}.bench.example"
    return f"ex{n:06d}.{domain}", domain, BUILDS[n % len(BUILDS)]


def msgtrk(lines: int, sources: int, servers: int, rng: random.Random) -> list[Source]:
    """One tracking log per server (`sources` is ignored: the log is the server's own). Each message
    has the two rows Exchange writes for mail it relays: RECEIVE, then SEND a moment later."""
    out = []
    per_server = max(8, lines // servers)
    for n in range(servers):
        host, domain, version = _server(n)
        source = Source(f"/bench/{host}/MSGTRK{n:06d}.LOG")
        header = ["#Software: Microsoft Exchange Server", f"#Version: {version}", "#Log-type: Message Tracking Log",
                  f"#Date: {START:%Y-%m-%dT%H:%M:%S.000Z}", f"#Fields: {','.join(FIELDS_2013_LATER)}"]
        source.lines = [f"{line}\r\n".encode() for line in header]
        step = SPAN / ((per_server - len(header)) // 2)
        for i in range((per_server - len(header)) // 2):
            received = START + step * i + timedelta(milliseconds=n % 1000)
            message_id = f"<{uuid.UUID(int=rng.getrandbits(128))}@{host}>"
            size = str(rng.randint(2_000, 90_000))
            for at, event, client, server in (
                (received, "RECEIVE", f"app{rng.randint(1, 3)}.{domain}", host),
                (received + timedelta(milliseconds=rng.randint(200, 900)), "SEND", host, "mx.partner.example"),
            ):
                row = dict.fromkeys(FIELDS_2013_LATER, "")
                row.update({
                    "date-time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
                    "client-ip": "192.0.2.25", "client-hostname": client, "server-ip": "198.51.100.1",
                    "server-hostname": server, "source": "SMTP", "event-id": event,
                    "source-context": f"08DC{rng.getrandbits(48):012X};{at:%Y-%m-%dT%H:%M:%S}.000Z;0",
                    "connector-id": f"{host.split('.')[0].upper()}\\Default Frontend {host.split('.')[0].upper()}",
                    "internal-message-id": str(rng.randint(10_000, 9_999_999)), "message-id": message_id,
                    "network-message-id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "recipient-address": "jo@partner.example", "total-bytes": size, "recipient-count": "1",
                    "message-subject": 'Report, "weekly"', "sender-address": f"app@{domain}",
                    "return-path": f"app@{domain}", "directionality": "Originating", "schema-version": version,
                    "custom-data": f"S:FirstForestHop={host};S:DeliveryPriority=Normal",
                    "transport-traffic-type": "Email",
                })
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\r\n").writerow([row[f] for f in FIELDS_2013_LATER])
                source.markers[len(source.lines)] = [(host, _ms(at))]
                source.lines.append(buffer.getvalue().encode())
            source.messages.add((host, message_id))
        out.append(source)
    return out


def _postfix_line(at: datetime, mx: str, pid: int, offset_ms: int, program: str, text: str) -> bytes:
    """A line that Postfix's `program` (process `pid`) on `mx` logs `offset_ms` after `at`."""
    moment = at + timedelta(milliseconds=offset_ms)
    return f"{moment.isoformat(timespec='microseconds')} {mx} postfix/{program}[{pid}]: {text}\n".encode()


def postfix(lines: int, sources: int, servers: int, rng: random.Random) -> list[Source]:
    """Postfix logs of `sources` MX hosts; each message comes from one of `servers` Exchange edges."""
    out = [Source(f"/bench/mx{s:05d}/mail.log") for s in range(sources)]
    messages = max(1, lines // 9)
    step = SPAN / messages
    for m in range(messages):
        source = out[m % sources]
        mx = f"mx{m % sources:05d}.bench.example"
        n = m % servers
        client, domain, version = _server(n)
        ip = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        at = START + step * m + timedelta(milliseconds=n % 1000)
        qid = f"{rng.getrandbits(44):011X}"
        message_id = f"<{uuid.UUID(int=rng.getrandbits(128))}@{domain}>"
        sender = f"a{rng.randint(1, 50)}@{domain}"
        build = ".".join(str(int(part)) for part in version.split("."))

        line = functools.partial(_postfix_line, at, mx, 2000 + m % 997)
        tail = f" from {client}[{ip}]; from=<{sender}> to=<jo@example.net> proto=ESMTP helo=<{client}>"
        ours = (f"from {client} ({client} [{ip}]) by {mx} (Postfix) with ESMTPS id {qid} for <jo@example.net>; "
                f"{format_datetime(at)}")
        theirs = (f"from mbx{n % 7}.{domain} (10.9.{n % 256}.7) by {client} ({ip}) with Microsoft SMTP Server "
                  f"(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id {build} via Frontend Transport; "
                  f"{format_datetime(at - timedelta(seconds=1))}")
        source.lines += [
            line(0, "smtpd", f"connect from {client}[{ip}]"),
            line(1, "smtpd", f"{qid}: client={client}[{ip}]"),
            line(40, "cleanup", f"{qid}: warning: header Received: {ours}{tail}"),
            line(41, "cleanup", f"{qid}: warning: header Received: {theirs}{tail}"),
            line(42, "cleanup", f"{qid}: message-id={message_id}"),
            line(60, "qmgr", f"{qid}: from=<{sender}>, size={rng.randint(2_000, 90_000)}, nrcpt=1 (queue active)"),
            line(300, "lmtp", f"{qid}: to=<jo@example.net>, relay=mail.bench.example[private/dovecot-lmtp], delay=0.3, "
                              f"delays=0.06/0/0.1/0.14, dsn=2.0.0, status=sent (250 2.0.0 <jo@example.net> Saved)"),
            line(301, "qmgr", f"{qid}: removed"),
            line(302, "smtpd",
                 f"disconnect from {client}[{ip}] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7"),
        ]
        # The "queue active" line completes the message; its event time is that of the client= line.
        source.markers[len(source.lines) - 4] = [(client, _ms(at + timedelta(milliseconds=1)))]
        source.messages.add((client, message_id))
    return out


def headers(lines: int, sources: int, servers: int, rng: random.Random) -> list[Source]:
    """mbox files of `sources` mailboxes; each message passed an Exchange edge and mailbox server."""
    out = [Source(f"/bench/mbox{s:05d}.mbox") for s in range(sources)]
    messages = max(1, lines // 20)
    step = SPAN / messages
    for m in range(messages):
        source = out[m % sources]
        mx = f"mx{m % sources:05d}.bench.example"
        n = m % servers
        client, domain, version = _server(n)
        mailbox = f"mbx{n % 7}.{domain}"
        build = ".".join(str(int(part)) for part in version.split("."))
        at = (START + step * m + timedelta(seconds=n % 60)).replace(microsecond=0)
        message_id = f"<{uuid.UUID(int=rng.getrandbits(128))}@{domain}>"
        block = [
            f"From a@{domain} {at:%a %b %d %H:%M:%S %Y}",
            f"Return-Path: <a@{domain}>",
            f"Received: from {client} ({client} [10.1.{n % 256}.9]) by {mx} (Postfix) with ESMTPS id "
            f"{rng.getrandbits(44):011X}",
            f"\tfor <jo@example.net>; {format_datetime(at)}",
            f"Received: from {mailbox} (10.9.{n % 256}.7) by {client} (10.1.{n % 256}.9) with Microsoft SMTP Server",
            f" (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id {build} via Frontend Transport;",
            f" {format_datetime(at - timedelta(seconds=1))}",
            f"Received: from {mailbox} ([fe80::7%3]) by {mailbox} ([fe80::7%3]) with mapi id {version};",
            f" {format_datetime(at - timedelta(seconds=2))}",
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s1; h=From:To:Subject:Date;",
            f"\tbh={uuid.UUID(int=rng.getrandbits(128)).hex}=; b={uuid.UUID(int=rng.getrandbits(128)).hex}",
            f"From: Accounts <a@{domain}>",
            "To: <jo@example.net>",
            f"Subject: Invoice {m}",
            f"Date: {format_datetime(at - timedelta(seconds=3))}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "Please find the invoice attached.",
        ]
        source.lines += [f"{text}\n".encode() for text in block]
        # The blank line ends the header block; the message's time is its newest Received header.
        source.markers[len(source.lines) - 2] = [(client, _ms(at)), (mailbox, _ms(at))]
        source.messages |= {(client, message_id), (mailbox, message_id)}
    return out


FORMATS = {"msgtrk": msgtrk, "postfix": postfix, "headers": headers}
