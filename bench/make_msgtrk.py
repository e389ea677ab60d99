"""Write realistic Exchange message tracking logs (MSGTRK*.LOG) for demos and benchmarks.

The layout follows what Exchange writes: a header block per file (#Software, #Version with the
long zero-padded build, #Log-type, #Date, #Fields), CSV rows in the column order of that version,
quoted fields with doubled quotes, ';'-separated lists, CRLF line ends and a UTF-8 BOM.

    python bench/make_msgtrk.py --demo deploy/samples          # the bundled sample logs
    python bench/make_msgtrk.py --lines 1000000 --out big.LOG  # a large log for throughput runs
"""
from __future__ import annotations

import argparse
import csv
import io
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

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
    recipients = ";".join(f"rcpt{rng.randint(1, 99)}@partner{rng.randint(1, 5)}.example" for _ in range(rng.randint(1, 3)))
    size = str(rng.randint(2_000, 900_000))
    peer_ip = rng.choice(["192.0.2.25", "2001:db8::25", "fe80::1c2a:7e4f:3b1d:9a10%3"])
    session = f"{rng.getrandbits(64):016X}"
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
            "connector-id": f"{server.hostname.split('.')[0].upper()}\\Default Frontend {server.hostname.split('.')[0].upper()}",
            "source": "SMTP",
            "event-id": "RECEIVE",
            "message-info": f"{_stamp(at - timedelta(seconds=2))};SRV={server.hostname}:TOTAL=0",
            "custom-data": f"S:FirstForestHop={server.hostname};S:DeliveryPriority=Normal;S:AccountForest={server.org_domain}",
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
            "source-context": f"{session};250 2.6.0 {message_id} [InternalId=1, Hostname={server.hostname}] Queued mail for delivery;ClientSubmitTime:{_stamp(at)}",
            "connector-id": "Internet Send Connector",
            "source": "SMTP",
            "event-id": "SEND",
            "recipient-status": "250 2.6.0 Queued mail for delivery",
        },
    )
    return [receive, send]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


DEMO_SERVERS = (
    # Exchange 2013 CU23: out of support since April 2023.
    (Server("ex13mbx01.contoso.example", "198.51.100.13", "15.00.1497.002", tuple(FIELDS_2013_LATER), "contoso.example"), "2026-01-02", 80),
    # Exchange 2016 CU23 with the May 2022 SU: below the Exchange2016 baseline.
    (Server("ex16mbx01.contoso.example", "198.51.100.16", "15.01.2507.009", tuple(FIELDS_2013_LATER), "contoso.example"), "2026-02-10", 40),
    # Exchange 2019 CU15 with the October 2025 SU: at the baseline, compliant.
    (Server("ex19mbx01.fabrikam.example", "198.51.100.19", "15.02.1748.039", tuple(FIELDS_2013_LATER), "fabrikam.example"), "2026-03-01", 20),
    # Exchange Server SE: compliant.
    (Server("exse01.northwind.example", "198.51.100.20", "15.02.2562.029", tuple(FIELDS_2013_LATER), "northwind.example"), "2026-03-10", 10),
    # Exchange 2010 writes no build into its tracking log: traffic without a build.
    (Server("ex10hub01.contoso.example", "198.51.100.10", "14.0.0.0", tuple(FIELDS_2010), "contoso.example"), "2026-03-15", 5),
)


def write_demo(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)
    for server, start, days in DEMO_SERVERS:
        opened = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
        name = f"MSGTRK_{server.hostname.split('.')[0].upper()}_{opened:%Y%m%d}.LOG"
        (folder / name).write_bytes(render(server, opened, days, 1, rng).encode("utf-8"))


def write_large(path: Path, lines: int) -> None:
    rng = random.Random(7)
    server = Server("ex16big01.contoso.example", "198.51.100.61", "15.01.2507.039", tuple(FIELDS_2013_LATER), "contoso.example")
    per_day = 500
    days = max(1, lines // (per_day * 2))
    path.write_bytes(render(server, datetime(2026, 1, 1, tzinfo=timezone.utc), days, per_day, rng).encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="write the bundled sample logs into this folder")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.demo:
        write_demo(args.demo)
    if args.out:
        write_large(args.out, args.lines)


if __name__ == "__main__":
    main()
