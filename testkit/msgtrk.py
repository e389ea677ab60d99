"""Realistic Exchange message tracking logs (MSGTRK*.LOG), generated: for the tests and for
bench/make_msgtrk.py, which writes the demo's sample logs and large logs for the benchmarks.

The layout follows what Exchange writes: a header block per file (#Software, #Version with the
long zero-padded build, #Log-type, #Date, #Fields), CSV rows in the column order of that version,
quoted fields with doubled quotes, ';'-separated lists, CRLF line ends and a UTF-8 BOM.
"""
from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FIELDS_2013_LATER = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,"
    "source,event-id,internal-message-id,message-id,network-message-id,recipient-address,"
    "recipient-status,total-bytes,recipient-count,related-recipient-address,reference,"
    "message-subject,sender-address,return-path,message-info,directionality,tenant-id,"
    "original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,schema-version"
).split(",")
FIELDS_2013_CU9 = FIELDS_2013_LATER[:27]
FIELDS_2010 = [f for f in FIELDS_2013_CU9 if f != "network-message-id"]

SUBJECTS = (
    "Quarterly numbers",
    'Re: "Budget", final version',
    "Invoice 4471, March",
    "Lunch?",
    "Übergabe Projekt Nordwind",
)


@dataclass(frozen=True)
class Server:
    hostname: str
    ip: str
    version: str  # as #Version writes it: long form, or 14.0.0.0 for Exchange 2010
    fields: tuple[str, ...]
    org_domain: str


def render(server: Server, start: datetime, days: int, per_day: int, rng: random.Random) -> str:
    """One tracking log per day for `server`, concatenated as a shipper delivers them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("\ufeff")
    for day in range(days):
        opened = start + timedelta(days=day)
        out.write("#Software: Microsoft Exchange Server\r\n")
        out.write(f"#Version: {server.version}\r\n")
        out.write("#Log-type: Message Tracking Log\r\n")
        out.write(f"#Date: {_stamp(opened)}\r\n")
        out.write(f"#Fields: {','.join(server.fields)}\r\n")
        for n in range(per_day):
            sent = opened + timedelta(seconds=(n + 1) * (86_000 // max(per_day, 1)) + rng.randint(0, 40))
            for row in _message_rows(server, sent, rng):
                writer.writerow([row.get(f, "") for f in server.fields])
    return out.getvalue()


def _message_rows(server: Server, at: datetime, rng: random.Random) -> list[dict[str, str]]:
    message_id = f"<{uuid.UUID(int=rng.getrandbits(128))}@{server.hostname}>"
    sender = f"user{rng.randint(1, 40)}@{server.org_domain}"
    recipients = ";".join(f"rcpt{rng.randint(1, 99)}@partner{rng.randint(1, 5)}.example"
                          for _ in range(rng.randint(1, 3)))
    size = str(rng.randint(2_000, 900_000))
    peer_ip = rng.choice(["192.0.2.25", "2001:db8::25", "fe80::1c2a:7e4f:3b1d:9a10%3"])
    session = f"{rng.getrandbits(64):016X}"
    short_name = server.hostname.split(".")[0].upper()
    common = {
        "message-id": message_id,
        "network-message-id": str(uuid.UUID(int=rng.getrandbits(128))),
        "internal-message-id": str(rng.randint(10_000, 9_999_999)),
        "recipient-address": recipients,
        "total-bytes": size,
        "recipient-count": str(recipients.count(";") + 1),
        "message-subject": rng.choice(SUBJECTS),
        "sender-address": sender,
        "return-path": sender,
        "directionality": "Originating",
        "schema-version": server.version if "schema-version" in server.fields else "",
        "transport-traffic-type": "Email",
        "log-id": str(uuid.UUID(int=rng.getrandbits(128))),
    }
    receive = dict(
        common,
        **{
            "date-time": _stamp(at),
            "client-ip": peer_ip,
            "client-hostname": f"app{rng.randint(1, 3)}.{server.org_domain}",
            "server-ip": server.ip,
            "server-hostname": server.hostname,
            "source-context": f"{session};{_stamp(at - timedelta(seconds=1))};0",
            "connector-id": f"{short_name}\\Default Frontend {short_name}",
            "source": "SMTP",
            "event-id": "RECEIVE",
            "message-info": f"{_stamp(at - timedelta(seconds=2))};SRV={server.hostname}:TOTAL=0",
            "custom-data": f"S:FirstForestHop={server.hostname};S:DeliveryPriority=Normal;"
                           f"S:AccountForest={server.org_domain}",
        },
    )
    send = dict(
        common,
        **{
            "date-time": _stamp(at + timedelta(milliseconds=rng.randint(200, 4_000))),
            "client-ip": server.ip,
            "client-hostname": server.hostname,
            "server-ip": "203.0.113.45",
            "server-hostname": "mx.partner.example",
            "source-context": f"{session};250 2.6.0 {message_id} [InternalId=1, Hostname={server.hostname}] "
                              f"Queued mail for delivery;ClientSubmitTime:{_stamp(at)}",
            "connector-id": "Internet Send Connector",
            "source": "SMTP",
            "event-id": "SEND",
            "recipient-status": "250 2.6.0 Queued mail for delivery",
        },
    )
    return [receive, send]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
