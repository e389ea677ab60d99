"""`patchgate milter`: one MTA connection's answers, with the policy server's decisions, windows and
release behind it, and the server over a real TCP connection."""
import asyncio
import dataclasses
import logging
import struct
from datetime import UTC, datetime

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.windows import window_offset
from pipeline.edges import milter_protocol as protocol
from pipeline.edges.connection_guard import ConnectionGuard
from pipeline.edges.decision_cache import DecisionCache
from pipeline.edges.milter import MilterServer, MilterSession
from pipeline.edges.mta import PolicyServer
from pipeline.edges.release import Releaser
from pipeline.settings import MtaSettings, Settings

SERVER = "ex16mbx01.contoso.example"
BLOCK = "550 5.7.230 Connecting server version is out-of-date; connection blocked for 10 mins/hr."
CONTINUE = protocol.encode(protocol.CONTINUE)
ACCEPT = protocol.encode(protocol.ACCEPT)
# What Postfix offers: version 6, every action, every step left out if asked.
NEGOTIATION = struct.pack(">III", 6, 0x1FF, 0x1FFFFF)
# The sending server's own header, as Exchange writes it: an out-of-date build, and the current one.
OLD_BUILD = (f"from mbx02.contoso.example (10.9.0.7) by {SERVER} (10.1.0.9) with Microsoft SMTP Server "
             "id 15.1.2507.9; Wed, 2 Dec 2026 09:59:58 +0000")
CURRENT_BUILD = OLD_BUILD.replace("15.1.2507.9", "15.1.2507.61")


def connect(hostname: str, address: str) -> bytes:
    return hostname.encode() + b"\x004" + struct.pack(">H", 25) + address.encode() + b"\x00"


def header(name: str, value: str) -> bytes:
    return name.encode() + b"\x00" + value.encode() + b"\x00"


class Site:
    """A PolicyServer in the block window of SERVER's decision (Exchange 2016 at 15.1.2507.9,
    stage 3), with the catalog and release; what it enforces and the traces it releases are kept."""

    def __init__(self, make_decision):
        cache = DecisionCache()
        cache.apply(dataclasses.replace(make_decision(1, 3), server_id=SERVER, hostname=SERVER, product="Exchange2016",
                                        build="15.1.2507.9", block_minutes_per_hour=10, throttle_minutes_per_hour=0))
        now = datetime(2026, 12, 2, 10, window_offset(SERVER), tzinfo=UTC)
        self.enforced: list = []
        self.traces: list = []
        releaser = Releaser(PolicyConfig(trusted_receivers=("mx.example.net",)), load_catalog(Settings().catalog_file),
                            self.traces.append, "milter")
        self.server = PolicyServer(cache, lambda decision, kind, at, request: self.enforced.append(
            (kind, request.get("helo_name"))), clock=lambda: now, releaser=releaser)


def message(session: MilterSession, helo: str, received: list[str], recipients=("<jo@example.net>",)) -> list:
    """A connection's packets up to the end of one message's headers, through `session`; the answers."""
    session.answer(protocol.NEGOTIATE, NEGOTIATION)
    answers = [session.answer(protocol.CONNECT, connect("[192.0.2.7]", "192.0.2.7")),
               session.answer(protocol.HELO, helo.encode() + b"\x00"),
               session.answer(protocol.MAIL, b"<ann@contoso.example>\x00SIZE=100\x00")]
    answers += [session.answer(protocol.RCPT, r.encode() + b"\x00") for r in recipients]
    answers += [session.answer(protocol.HEADER, header("Received", value)) for value in received]
    answers.append(session.answer(protocol.HEADER, header("Subject", "hello")))
    answers.append(session.answer(protocol.END_OF_HEADERS, b""))
    return answers


def test_a_blocked_server_gets_its_reply_at_the_end_of_headers_once_per_message(make_decision):
    site = Site(make_decision)
    session = MilterSession(site.server)
    ours = "from [192.0.2.7] by mx.example.net (Postfix) with ESMTP id 4XyZ1; Wed, 2 Dec 2026 10:00:00 +0000"
    answers = message(session, SERVER, [ours, OLD_BUILD], recipients=("<jo@example.net>", "<an@example.net>"))
    # Postfix left the answers to headers out; each recipient is let on, the message refused whole.
    assert answers == [CONTINUE, CONTINUE, CONTINUE, CONTINUE, CONTINUE, None, None, None, protocol.reply(BLOCK)]
    assert site.enforced == [("block", SERVER)] and site.traces == []


def test_the_servers_own_header_with_a_current_build_releases_it_and_its_trace_goes_to_the_pipeline(make_decision):
    site = Site(make_decision)
    answers = message(MilterSession(site.server), SERVER, [CURRENT_BUILD])
    assert answers[-1] == ACCEPT
    assert site.enforced == []
    (trace,) = site.traces
    assert (trace.source_format, trace.received, trace.client_ip) == ("smtp", (CURRENT_BUILD,), "192.0.2.7")


def test_a_header_that_names_another_server_or_an_older_build_releases_nothing(make_decision):
    site = Site(make_decision)
    someone_else = CURRENT_BUILD.replace(f"by {SERVER}", "by ex19.fabrikam.example")
    assert message(MilterSession(site.server), SERVER, [someone_else])[-1] == protocol.reply(BLOCK)
    assert message(MilterSession(site.server), SERVER, [])[-1] == protocol.reply(BLOCK)
    assert site.traces == [] and len(site.enforced) == 2


def test_a_client_without_a_decision_is_let_through_and_its_message_accepted(make_decision):
    site = Site(make_decision)
    session = MilterSession(site.server)
    answers = message(session, "mx.fabrikam.example", [CURRENT_BUILD])
    assert answers[-1] == ACCEPT and site.enforced == []
    assert session.answer(protocol.BODY_END, b"") == ACCEPT


def test_a_reused_milter_connection_decides_each_smtp_connection_anew(make_decision):
    site = Site(make_decision)
    session = MilterSession(site.server)
    assert message(session, "mx.fabrikam.example", [])[-1] == ACCEPT
    assert session.answer(protocol.QUIT_NEW_CONNECTION, b"") is None
    assert message(session, SERVER, [])[-1] == protocol.reply(BLOCK)


def served(site: Site, packets: list[bytes], guard: ConnectionGuard | None = None) -> bytes:
    """What the milter, behind `guard` as serve_decisions has it (default: one that closes it when
    idle for 5 s), sends back on one TCP connection for `packets` until it closes it."""
    guard = guard or ConnectionGuard(MtaSettings(idle_timeout_seconds=5), "milter")

    async def run() -> bytes:
        listener = await asyncio.start_server(guard.guarded(MilterServer(site.server).handle), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(packets))
        answer = await asyncio.wait_for(reader.read(), guard.limits.idle_timeout_seconds + 5)
        writer.close()
        listener.close()
        await listener.wait_closed()
        return answer
    return asyncio.run(run())


def test_over_tcp_a_blocked_server_gets_550_at_the_end_of_headers(make_decision):
    site = Site(make_decision)
    answer = served(site, [protocol.encode(protocol.NEGOTIATE, NEGOTIATION),
                           protocol.encode(protocol.CONNECT, connect("[192.0.2.7]", "192.0.2.7")),
                           protocol.encode(protocol.HELO, SERVER.encode() + b"\x00"),
                           protocol.encode(protocol.MAIL, b"<ann@contoso.example>\x00"),
                           protocol.encode(protocol.RCPT, b"<jo@example.net>\x00"),
                           protocol.encode(protocol.HEADER, header("Received", OLD_BUILD)),
                           protocol.encode(protocol.END_OF_HEADERS),
                           protocol.encode(protocol.QUIT)])
    # CONNECT, HELO, MAIL and RCPT go on; no answer to the header; the reply at its end.
    assert answer == protocol.negotiated(NEGOTIATION)[1] + CONTINUE * 4 + protocol.reply(BLOCK)
    assert site.enforced == [("block", SERVER)]


def test_over_tcp_what_is_not_the_protocol_or_says_nothing_is_closed(make_decision):
    site = Site(make_decision)
    assert served(site, [b"\x7f\xff\xff\xffO"]) == b"", "a length beyond MAX_PACKET"
    assert served(site, [protocol.encode(protocol.NEGOTIATE, b"\x00\x00\x00\x06")]) == b"", "a negotiation too short"


def test_over_tcp_an_mta_that_goes_quiet_is_closed_once_idle(make_decision, caplog):
    site = Site(make_decision)
    guard = ConnectionGuard(MtaSettings(idle_timeout_seconds=0.2), "milter")
    negotiated = protocol.negotiated(NEGOTIATION)[1]
    with caplog.at_level(logging.INFO, logger="pipeline.edges.connection_guard"):
        # Between packets, and mid-packet.
        assert served(site, [protocol.encode(protocol.NEGOTIATE, NEGOTIATION)], guard=guard) == negotiated
        assert served(site, [b"\x00\x00\x00\x10C"], guard=guard) == b""
    # The first close logged at once, the second counted for the next line.
    assert caplog.messages == ["milter: closed 1 connections idle for 0.2 s"] and guard.idle.count == 1
